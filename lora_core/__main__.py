import sys

from .cli.args import precheck

# Flags are checked before the library (and torch, 5-9 s to load here) is imported, so a typo is answered at once.
try:
    code = precheck(sys.argv[1:])
except KeyboardInterrupt:
    sys.exit(130)
if code is not None:
    sys.exit(code)

from .cli.main import main

try:
    sys.exit(main())
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
