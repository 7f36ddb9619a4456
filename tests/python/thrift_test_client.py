"""Checks every method of Apache Thrift's ThriftTest (and SecondService)
against a server, through Python's Apache `thrift` library and code that
`thrift --gen py` generated from fixtures/thrift/thrift_test.thrift.

    thrift_test_client.py GEN_DIR HOST PORT PROTOCOL TRANSPORT [--multiplexed]

PROTOCOL: binary, compact, header-binary or header-compact (THeader, its
payload in that protocol). TRANSPORT: framed or unframed (ignored for
THeader, which frames itself). --multiplexed names every call
`Service:method` (TMultiplexedProtocol) and also calls SecondService.

Prints one line per failed check and then `N passed, M failed`; exits 1
if any check failed.
"""

import sys
import time


def main():
    gen_dir, host, port, protocol, transport = sys.argv[1:6]
    multiplexed = "--multiplexed" in sys.argv[6:]
    sys.path.insert(0, gen_dir)

    from thrift.protocol import TBinaryProtocol, TCompactProtocol, THeaderProtocol
    from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
    from thrift.transport import TSocket, TTransport
    from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID
    from thrift.Thrift import TApplicationException, TException

    from ThriftTest import SecondService, ThriftTest
    from ThriftTest.ttypes import Insanity, Numberz, Xception, Xception2, Xtruct, Xtruct2

    socket = TSocket.TSocket(host, int(port))
    socket.setTimeout(20_000)
    if protocol.startswith("header-"):
        sub = THeaderSubprotocolID.BINARY if protocol == "header-binary" else THeaderSubprotocolID.COMPACT
        trans = socket
        proto = THeaderProtocol.THeaderProtocol(trans, [THeaderClientType.HEADERS], default_protocol=sub)
    else:
        trans = TTransport.TFramedTransport(socket) if transport == "framed" else TTransport.TBufferedTransport(socket)
        proto = (TBinaryProtocol.TBinaryProtocol if protocol == "binary" else TCompactProtocol.TCompactProtocol)(trans)
    trans.open()
    if multiplexed:
        client = ThriftTest.Client(TMultiplexedProtocol(proto, "ThriftTest"))
        second = SecondService.Client(TMultiplexedProtocol(proto, "SecondService"))
    else:
        client = ThriftTest.Client(proto)
        second = None

    results = {"passed": 0, "failed": 0}

    def check(name, got, expected):
        if got == expected:
            results["passed"] += 1
        else:
            results["failed"] += 1
            print(f"FAILED {name}: got {got!r}, expected {expected!r}")

    def raises(name, exception_type, call, test=lambda e: True):
        try:
            call()
        except exception_type as e:
            check(name, test(e), True)
            return
        except Exception as e:  # noqa: BLE001 - any other outcome is a failure
            check(name, f"{type(e).__name__}: {e}", exception_type.__name__)
            return
        check(name, "no exception", exception_type.__name__)

    check("testVoid", client.testVoid(), None)
    for s in ["", "Test", "\u00e9\u00e8 \u4e2d\u6587 \U0001f600", "x" * 65536]:
        check(f"testString({len(s)})", client.testString(s), s)
    check("testBool(true)", client.testBool(True), True)
    check("testBool(false)", client.testBool(False), False)
    for b in [0, 1, -1, 127, -128]:
        check(f"testByte({b})", client.testByte(b), b)
    for i in [0, -1, 2**31 - 1, -(2**31)]:
        check(f"testI32({i})", client.testI32(i), i)
    for i in [0, -34359738368, 2**63 - 1, -(2**63)]:
        check(f"testI64({i})", client.testI64(i), i)
    for d in [0.0, -5.2098523, 1.7976931348623157e308, -0.000341012439638598279]:
        check(f"testDouble({d})", client.testDouble(d), d)
    binary = bytes(range(256)) * 4
    check("testBinary", client.testBinary(binary), binary)
    x = Xtruct(string_thing="Zero", byte_thing=1, i32_thing=-3, i64_thing=-5)
    check("testStruct", client.testStruct(x), x)
    x2 = Xtruct2(byte_thing=1, struct_thing=x, i32_thing=5)
    check("testNest", client.testNest(x2), x2)
    m = {i: i - 10 for i in range(5)}
    check("testMap", client.testMap(m), m)
    sm = {"a": "2", "b": "blah", "some": "thing", "\u00e9": "\u4e2d"}
    check("testStringMap", client.testStringMap(sm), sm)
    st = {-2, -1, 0, 1, 2, 3, 4}
    check("testSet", client.testSet(st), st)
    lst = [-2, -1, 0, 1, 2, 3, 4, 5]
    check("testList", client.testList(lst), lst)
    for n in [Numberz.ONE, Numberz.TWO, Numberz.FIVE, Numberz.EIGHT]:
        check(f"testEnum({n})", client.testEnum(n), n)
    check("testTypedef", client.testTypedef(309858235082523), 309858235082523)
    check(
        "testMapMap",
        client.testMapMap(1),
        {-4: {-4: -4, -3: -3, -2: -2, -1: -1}, 4: {1: 1, 2: 2, 3: 3, 4: 4}},
    )
    insanity = Insanity(
        userMap={Numberz.FIVE: 5, Numberz.EIGHT: 8},
        xtructs=[Xtruct(string_thing="Goodbye4", byte_thing=4, i32_thing=4, i64_thing=4)],
    )
    check(
        "testInsanity",
        client.testInsanity(insanity),
        {1: {Numberz.TWO: insanity, Numberz.THREE: insanity}, 2: {Numberz.SIX: Insanity()}},
    )
    check(
        "testMulti",
        client.testMulti(9, 11, 13, {1: "one", 2: "two"}, Numberz.FIVE, 7),
        Xtruct(string_thing="Hello2", byte_thing=9, i32_thing=11, i64_thing=13),
    )
    raises(
        "testException(Xception)",
        Xception,
        lambda: client.testException("Xception"),
        lambda e: (e.errorCode, e.message) == (1001, "Xception"),
    )
    raises("testException(TException)", TException, lambda: client.testException("TException"))
    check("testException(Safe)", client.testException("Safe"), None)
    raises(
        "testMultiException(Xception)",
        Xception,
        lambda: client.testMultiException("Xception", "ignored"),
        lambda e: (e.errorCode, e.message) == (1001, "This is an Xception"),
    )
    raises(
        "testMultiException(Xception2)",
        Xception2,
        lambda: client.testMultiException("Xception2", "ignored"),
        lambda e: (e.errorCode, e.struct_thing.string_thing) == (2002, "This is an Xception2"),
    )
    check(
        "testMultiException(Safe)",
        client.testMultiException("Safe", "arg1"),
        Xtruct(string_thing="arg1"),
    )
    started = time.monotonic()
    client.testOneway(1)
    check("testOneway returns at once", time.monotonic() - started < 0.9, True)
    check("a call after testOneway", client.testI32(-1), -1)
    if second is not None:
        check("SecondService.secondtestString", second.secondtestString("x"), 'testString("x")')
        check("SecondService.blahBlah", second.blahBlah(), None)
        check("ThriftTest after SecondService", client.testString("again"), "again")
        # A service the server does not have: an application exception.
        missing = ThriftTest.Client(TMultiplexedProtocol(proto, "NoSuchService"))
        raises(
            "an unknown service",
            TApplicationException,
            lambda: missing.testVoid(),
            lambda e: e.type == TApplicationException.UNKNOWN_METHOD and "NoSuchService" in e.message,
        )
        check("the connection serves on", client.testVoid(), None)

    trans.close()
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
