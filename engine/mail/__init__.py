"""Mail: from a template and a context to the bytes of one email.

Owns the sandboxed Jinja environment (``templating``), the per-kind template contract that
``retain validate`` checks against (``contract``), rendering with CSS inlined once and the plain
text part (``render``), and the MIME message with its headers (``mime``).

Must not: touch the database or read the clock. Everything it needs (the customer, the offer,
the moment) arrives as arguments, so a template can be previewed for any day and rendered in a
worker process.
"""
