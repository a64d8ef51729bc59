"""`python -m trainpipe_operator`: the same as the `trainpipe-operator` command."""

from trainpipe_operator.main import main

raise SystemExit(main())
