"""``python -m taskmill.testing.fake_model --script FILE [--port N] [--log FILE]``."""

import sys

from taskmill.testing.fake_model.server import main

if __name__ == "__main__":
    sys.exit(main())
