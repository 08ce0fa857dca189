"""``python -m examples.product_orchestration``: run the demo (see :mod:`.demo`)."""

from examples.product_orchestration.demo import main

raise SystemExit(main())
