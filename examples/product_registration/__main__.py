"""``python -m examples.product_registration``: run the demo (see :mod:`.demo`)."""

from examples.product_registration.demo import main

raise SystemExit(main())
