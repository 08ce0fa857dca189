"""The stack: an orchestrator workflow, four services, and the rule that starts the workflow.

::

    product_registered --rule--> workflow register-product
        Parallel ┬ AwardPoints           service:loyalty.award            (request/response)
                 └ RequestDiscount       event discount_requested + token (waits)
                     promotions --discount_generated(token)--> registration.relay_token
                                                     --send_task_success--> workflow resumes
                   EmailDiscount         service:emails.send_discount
        InformSupport                    event support_case_requested     (fire and forget)
        Done

Each service owns its store. Promotions knows nothing of workflows: it keeps the token with
the request (the correlation the seed talk asks remote services to keep) and hands it back in
its own event; the orchestrator's ``relay_token`` handler submits it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from setpiece import Bus, Context, Event, Service, Stack, Workflow, WorkflowTarget
from setpiece.patterns import InputTransformer

STACK_NAME = "product-orchestration"
PRODUCT_REGISTERED = "product_registered"

# -- the services ---------------------------------------------------------------------------

loyalty = Service("loyalty")


@loyalty.task()
async def award(event: Event, ctx: Context) -> dict[str, Any]:
    """100 points per registered product, added to the customer's balance."""
    customer, points = event.data["customer"], 100
    balance = await ctx.store.get(customer, 0) + points
    await ctx.store.put(customer, balance)
    await ctx.publish(Event(type="points_awarded", data={"customer": customer, "points": points}))
    return {"points": points}


promotions = Service("promotions")


@promotions.on({"type": ["discount_requested"]})
async def generate(event: Event, ctx: Context) -> Event:
    """Generate a discount code; answer in an event that carries the caller's token back."""
    serial = event.data["serial"]
    code = "D-" + hashlib.sha256(serial.encode()).hexdigest()[:8].upper()
    await ctx.store.put(serial, {"code": code, "token": event.data["token"]})
    return Event(type="discount_generated",
                 data={"serial": serial, "code": code, "token": event.data["token"]})


emails = Service("emails")


@emails.task()
async def send_discount(event: Event, ctx: Context) -> dict[str, Any]:
    """Send (here: record) the discount email."""
    message = {"to": event.data["email"], "subject": "Your discount code",
               "body": f"Thanks for registering your {event.data['model']}: "
                       f"{event.data['code']}"}
    await ctx.store.put(event.data["serial"], message)
    return {"sent": True}


support = Service("support")


@support.on({"type": ["support_case_requested"]})
async def open_case(event: Event, ctx: Context) -> None:
    await ctx.store.put(event.data["serial"], {"customer": event.data["customer"],
                                               "model": event.data["model"]})


registration = Service("registration")


@registration.on({"type": ["discount_generated"]})
async def relay_token(event: Event, ctx: Context) -> None:
    """Step 4 of the seed's picture: submit the token that came back, with the result."""
    await ctx.send_task_success(event.data["token"], {"code": event.data["code"]})


# -- the workflow ---------------------------------------------------------------------------

DEFINITION: dict[str, Any] = {
    "Comment": "Product registration, orchestrated (seed 003: distributed orchestration)",
    "StartAt": "Reward",
    "TimeoutSeconds": 7 * 24 * 3600,
    "States": {
        "Reward": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "AwardPoints", "States": {"AwardPoints": {
                    "Type": "Task", "Resource": "service:loyalty.award",
                    "Parameters": {"customer.$": "$.customer"},
                    "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 3}],
                    "End": True}}},
                {"StartAt": "RequestDiscount", "States": {
                    "RequestDiscount": {
                        "Type": "Task", "Resource": "event:discount_requested.waitForTaskToken",
                        "Parameters": {"serial.$": "$.serial", "token.$": "$$.Task.Token"},
                        "TimeoutSeconds": 24 * 3600,
                        "ResultPath": "$.discount",
                        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure",
                                   "Next": "NoDiscount"}],
                        "Next": "EmailDiscount"},
                    "EmailDiscount": {
                        "Type": "Task", "Resource": "service:emails.send_discount",
                        "Parameters": {"email.$": "$.email", "model.$": "$.model",
                                       "serial.$": "$.serial", "code.$": "$.discount.code"},
                        "ResultPath": "$.email_sent",
                        "OutputPath": "$.discount",
                        "End": True},
                    "NoDiscount": {"Type": "Pass", "Result": {"code": None}, "End": True}}},
            ],
            "ResultSelector": {"loyalty.$": "$[0]", "discount.$": "$[1]"},
            "ResultPath": "$.rewards",
            "Next": "InformSupport",
        },
        "InformSupport": {
            "Type": "Task", "Resource": "event:support_case_requested",
            "Parameters": {"serial.$": "$.serial", "customer.$": "$.customer",
                           "model.$": "$.model"},
            "ResultPath": None,
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}

register_product = Workflow("register-product", DEFINITION)


def build_stack() -> Stack:
    """The architecture: a product_registered event starts one execution (named by its id)."""
    bus = Bus("default")
    bus.rule(
        "start-registration", {"type": [PRODUCT_REGISTERED]}, WorkflowTarget(register_product.name),
        transform=InputTransformer(
            {"customer": "$.detail.customer_id", "serial": "$.detail.serial_number",
             "email": "$.detail.email", "model": "$.detail.model"},
            '{"customer": <customer>, "serial": <serial>, "email": <email>, "model": <model>}',
        ),
    )
    return Stack(STACK_NAME, services=[loyalty, promotions, emails, support, registration],
                 buses=[bus], workflows=[register_product])


stack = build_stack()
