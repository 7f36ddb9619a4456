"""A ThriftTest server written with Python's Apache `thrift` library, for
the other direction of tests/thrift_cross_language.rs: a Rust client
built from baseplate's generated code calls it, and must see Python's
declared exceptions as their typed variants.

    thrift_test_server.py GEN_DIR

Serves framed binary on 127.0.0.1, a port of the kernel's choosing, and
prints `listening on PORT` once it accepts. Only the exception methods
are implemented: testException and testMultiException raise as Apache's
reference servers do. It serves until it is killed.
"""

import logging
import sys


def main():
    sys.path.insert(0, sys.argv[1])
    # The processor logs the undeclared exception's traceback; the test
    # checks what the client gets.
    logging.disable(logging.ERROR)

    from thrift.protocol import TBinaryProtocol
    from thrift.server import TServer
    from thrift.Thrift import TException
    from thrift.transport import TSocket, TTransport

    from ThriftTest import ThriftTest
    from ThriftTest.ttypes import Xception, Xception2, Xtruct

    class Handler:
        def testException(self, arg):
            if arg == "Xception":
                raise Xception(errorCode=1001, message=arg)
            if arg == "TException":
                raise TException("testException: TException requested")

        def testMultiException(self, arg0, arg1):
            if arg0 == "Xception":
                raise Xception(errorCode=1001, message="This is an Xception")
            if arg0 == "Xception2":
                raise Xception2(errorCode=2002, struct_thing=Xtruct(string_thing="This is an Xception2"))
            return Xtruct(string_thing=arg1)

    listener = TSocket.TServerSocket(host="127.0.0.1", port=0)
    listener.listen()
    port = listener.handle.getsockname()[1]
    # TSimpleServer.serve() listens again, which would bind a new port.
    listener.listen = lambda: None
    server = TServer.TSimpleServer(
        ThriftTest.Processor(Handler()),
        listener,
        TTransport.TFramedTransportFactory(),
        TBinaryProtocol.TBinaryProtocolFactory(),
    )
    print(f"listening on {port}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
