"""Product registration, orchestrated: the seed talk ``003``'s flow with a workflow in charge.

The choreographed variant (``examples.product_registration``) lets every service react to
``product_registered`` on its own. Here a durable workflow, started by a bus rule, runs the
flow: loyalty is called request/response, promotions is asked by an event that carries a task
token and answers in its own event (distributed orchestration: "Task A5 emits an event with a
task token and waits ... Step Function A resumes"), email and support follow.

Run it with ``python -m examples.product_orchestration``; build it with
:func:`examples.product_orchestration.app.build_stack`.
"""
