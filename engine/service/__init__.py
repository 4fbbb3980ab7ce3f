"""Service: the engine running unattended.

Owns when a campaign is due (``schedule``), the APScheduler service that runs due campaigns
(``scheduler``), the leader lease that keeps one scheduler per database (``leader``), what
``retain status`` reports (``status``), and the web app of ``retain serve`` (``webapp``:
Shopify webhooks and the one-click unsubscribe).

Must not: hold business rules. It decides *when*; what a run does is the delivery package's.
Only the scheduler reads the clock.
"""
