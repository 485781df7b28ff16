"""The reconciliation UI: server-rendered pages under ``/ui`` for the people who review matches.

Jinja2 templates plus htmx (vendored, no CDN), served by the service itself, so the UI ships in
the same image and sits behind the same Nginx as the API. Every page works as plain HTML forms;
htmx only makes progress polling, previews and row actions happen in place.

Modules, in import order (lower ones never import upper ones)::

    assets     the files under static/ (URLs with a content hash, served from memory-free paths)
    render     Jinja2 environment, the page response, security headers (CSP), error pages
    session    sign-in sessions in Redis, the cookie, CSRF tokens, idle expiry
    routing    UIRoute (headers, error pages, sign-in redirects) and the signed-in dependency
    api        the one seam to the HTTP API's own functions (app.web.*): same checks, same audit
    queries    result listings with the filters and sorts the API does not offer (yet)
    preview    upload preview: detected format, column mapping, first rows, problems
    ruleform   a RuleSet as an HTML form and back
    chart      the summary's matched/unmatched-over-dates SVG, computed server-side
    views/     the routes, one module per page family; views.router is what app.web.routes adds

Trap: this package's ``__init__`` imports nothing. :mod:`app.web` imports the UI router while
it builds the app, and the UI imports :mod:`app.web`'s modules; importing the router from here
would make ``import app.ui.queries`` (before :mod:`app.web`) re-enter a half-initialised module.
"""
