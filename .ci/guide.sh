#!/usr/bin/env bash
# Follows docs/own-service.md as a new user would: every block whose first
# line names a file (`# Cargo.toml`, `// src/bin/web.rs`) is written, as it
# is, into a new crate outside this repository; the crate must build with
# warnings denied, its test must pass, and its web binary must serve the
# guide's app.ini. A Rust, TOML, INI or Thrift block that names no file
# must say it is a sketch in its first line (`// A sketch: ...`).
#
#   bash .ci/guide.sh
#
# The only change to what a user copies: the `path = "../baseplate-serve"`
# dependency points at this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
CRATE=$WORK/my-service
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$CRATE"

python3 - "$ROOT/docs/own-service.md" "$CRATE" <<'PY'
import pathlib
import re
import sys

doc, out = sys.argv[1], pathlib.Path(sys.argv[2])
text = open(doc).read()
named = re.compile(r"^(?:#|//) ((?:src|tests|idl)/[\w./-]+|Cargo\.toml|app\.ini|build\.rs)$")
written = []
for lang, body in re.findall(r"^```(\w+)\n(.*?)^```$", text, re.S | re.M):
    first = body.split("\n", 1)[0].strip()
    match = named.match(first)
    if match:
        path = out / match.group(1)
        if match.group(1) in written:
            sys.exit(f"{doc}: two blocks are {match.group(1)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        written.append(match.group(1))
    elif lang in ("rust", "toml", "ini", "thrift") and not first.startswith("// A sketch"):
        sys.exit(
            f"{doc}: a {lang} block starts with {first!r}: name its file "
            "(`// src/bin/NAME.rs`) or say that it is a sketch (`// A sketch: ...`)"
        )
for needed in ("Cargo.toml", "app.ini", "build.rs"):
    if needed not in written:
        sys.exit(f"{doc}: no block is {needed}")
print("guide crate:", ", ".join(written))

# Every other page's Rust blocks are doctests (src/lib.rs, docs_compile),
# and a TOML block there says that it is a sketch.
root = pathlib.Path(doc).parent.parent
lib = (root / "src/lib.rs").read_text()
pages = [root / "README.md"] + sorted((root / "docs").rglob("*.md"))
for page in pages:
    if page.name == "own-service.md":
        continue
    blocks = re.findall(r"^```([\w,]+)\n(.*?)^```$", page.read_text(), re.S | re.M)
    shown = page.relative_to(root)
    rust = [b for lang, b in blocks if lang.split(",")[0] == "rust"]
    if rust and f'include_str!("../{shown}")' not in lib:
        sys.exit(f"{shown} has Rust blocks: add it to docs_compile in src/lib.rs")
    for lang, body in blocks:
        if lang == "toml" and not body.startswith("# A sketch"):
            sys.exit(f"{shown}: a TOML block that is not built must start with `# A sketch`")
    for lang, body in blocks:
        if lang.startswith("rust,ignore") and not body.startswith("// A sketch"):
            sys.exit(f"{shown}: an ignored Rust block must start with `// A sketch`")
PY

sed -i "s|path = \"../baseplate-serve\"|path = \"$ROOT\"|" "$CRATE/Cargo.toml"
# The versions this repository is tested with, as a starting lock.
cp Cargo.lock "$CRATE/Cargo.lock"
cd "$CRATE"
# A target directory of its own: the flags differ from the workspace's.
export CARGO_TARGET_DIR="$ROOT/target/guide"
export RUSTFLAGS="-D warnings"
cargo build --all-targets
cargo test

# The web binary serves the guide's config.
"$CARGO_TARGET_DIR/debug/web" --bind 127.0.0.1:0 app.ini > "$WORK/web.log" 2>&1 &
SERVER_PID=$!
python3 - "$WORK/web.log" <<'PY'
import re
import sys
import time
import urllib.request

log = sys.argv[1]
deadline = time.monotonic() + 60
address = None
while address is None:
    text = open(log).read()
    found = re.search(r"Listening on ([\d.]+:\d+)", text)
    if found:
        address = found.group(1)
    elif time.monotonic() > deadline:
        sys.exit(f"the guide's web binary did not start:\n{text}")
    else:
        time.sleep(0.05)
for path, expected in (("/", "howdy"), ("/ttl", "Some(30s)")):
    body = urllib.request.urlopen(f"http://{address}{path}", timeout=30).read().decode()
    if body != expected:
        sys.exit(f"GET {path} answered {body!r}, expected {expected!r}")
print(f"the guide's web binary serves on {address}")
PY
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=
rm -rf "$ROOT/target/guide"
echo "docs/own-service.md: the crate builds without warnings, its test passes, and it serves"
