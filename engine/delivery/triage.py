"""Why one email could not be made: the template's fault, or one customer's data.

Owns ``rendered_for``, which renders one customer's email the way every path does (the run's
composer, render workers, ``retain preview``) and sorts its failures:
- the recipient's address cannot be written in a header (mime.ascii_address's rule) →
  CustomerDataError on ``customer.email``;
- the template fails on this context but renders the sample contexts of its kind
  (contract.sample_contexts) → the data is at fault: CustomerDataError naming the customer
  and the value that, swapped for the sample's, lets it render (``customer.country``...);
- the template fails on the samples too → broken for everyone: its TemplateError, with file
  and line, stops the run before anything is claimed.
Only a failure pays for the extra renders; the samples' verdict is cached per template.
Must not: read the database, send, or put the address in a reason (a reason is one line, capped).
"""

from __future__ import annotations

from typing import Any

from engine.campaigns import models as cm
from engine.controlchars import one_line
from engine.errors import CustomerDataError, InputError, TemplateError
from engine.mail import contract, render
from engine.mail.mime import ascii_address

REASON_LENGTH = 400  # characters of a template's error quoted in a reason


def rendered_for(renderer: render.Renderer, campaign: cm.Campaign, subject: str,
                 context: dict[str, Any], samples_render: dict[tuple, bool] | None = None
                 ) -> render.RenderedEmail:
    """The email for one customer's context. A template that fails on the samples of its kind
    too raises its TemplateError (broken for everyone); one that fails only on this customer's
    data raises CustomerDataError, naming the field whose value it fails on when one is.
    ``samples_render`` caches the samples' verdict per template and subject."""
    customer = context["customer"]
    refuse_unwritable_address(customer["id"], customer["email"])
    try:
        return renderer.render(campaign.template, subject, context, campaign.preheader)
    except TemplateError as error:
        key = (campaign.template, subject, campaign.kind)
        cache = samples_render if samples_render is not None else {}
        if key not in cache:
            cache[key] = _renders(renderer, campaign, subject, contract.sample_contexts(
                campaign.kind))
        if not cache[key]:
            raise
        field = _failing_field(renderer, campaign, subject, context)
        # One line, short, and without the address should the template's error quote it.
        said = one_line(str(error))
        if customer["email"]:
            said = said.replace(customer["email"], "<address>")
        if len(said) > REASON_LENGTH:
            said = said[:REASON_LENGTH - 1] + "…"
        raise CustomerDataError(customer["id"], field, f"the template fails on their data "
                                f"({said}); fix the value in the shop's data or make the "
                                "template cope with it") from None


def refuse_unwritable_address(customer_id: int, address: str) -> None:
    """CustomerDataError when no header can carry the customer's address (mime's own rule)."""
    try:
        ascii_address(address, "recipient")
    except InputError as error:
        raise CustomerDataError(customer_id, "customer.email", error.message) from None


def _renders(renderer: render.Renderer, campaign: cm.Campaign, subject: str,
             contexts: list[dict[str, Any]]) -> bool:
    for sample in contexts:
        try:
            renderer.render(campaign.template, subject, sample, campaign.preheader)
        except TemplateError:
            continue
        return True
    return False


def _failing_field(renderer: render.Renderer, campaign: cm.Campaign, subject: str,
                   context: dict[str, Any]) -> str | None:
    """The customer, metrics or products value that, swapped for the sample's, lets the email
    render: the one it fails on. None when no single value does."""
    sample = contract.sample_context(campaign.kind)
    trials = [(group, key, {**context, group: {**context[group], key: value}})
              for group in ("customer", "metrics") for key, value in sample[group].items()
              if key != "id" and context[group].get(key) != value]
    trials.append(("products", None, {**context, "products": sample["products"]}))
    for group, key, trial in trials:
        if _renders(renderer, campaign, subject, [trial]):
            return f"{group}.{key}" if key else group
    return None
