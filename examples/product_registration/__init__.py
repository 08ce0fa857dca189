"""Product registration, choreographed: the flow from the seed talk ``003`` (Sheen Brisals).

A customer registers a product. Products records it and announces ``product_registered``; from
there nobody is in charge. Loyalty awards points, promotions generates a discount code that email
sends, support opens an aftercare case, and a bus rule notifies the manufacturer's webhook in the
manufacturer's own format. Each service keeps its own store and knows only the events it reads.

Run it with ``python -m examples.product_registration`` (or ``scripts/demo``); build it with
:func:`examples.product_registration.app.build_stack`.
"""
