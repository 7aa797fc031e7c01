"""``python -m alexnet_cli``: the ``alexnet`` command (e.g. under ``torchrun -m alexnet_cli train``)."""

import sys

from alexnet_cli.main import main

sys.exit(main())
