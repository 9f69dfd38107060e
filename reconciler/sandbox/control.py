"""`/_sandbox/...`: knobs and request counts over HTTP, for tests that drive a sandbox running
in another process (the CLI, the daemon) or behind the Portkey gateway. Not counted, no key.
"""

from __future__ import annotations

from reconciler.sandbox.app import App
from reconciler.sandbox.body import BodyReader
from reconciler.sandbox.exchange import Reply
from reconciler.sandbox.problems import ApiProblem, bad_request, unknown_route


def control(app: App, method: str, path: str, body: BodyReader) -> Reply:
    try:
        return _dispatch(app, method, path.rstrip("/"), body)
    except ApiProblem as problem:
        return Reply.of(problem)


def _dispatch(app: App, method: str, path: str, body: BodyReader) -> Reply:
    if (method, path) == ("GET", "/_sandbox/requests"):
        return Reply(json=app.counts())
    if (method, path) == ("POST", "/_sandbox/requests/reset"):
        app.reset_counts()
        return Reply(json=app.counts())
    if (method, path) == ("GET", "/_sandbox/config"):
        return Reply(json=app.config.public())
    if (method, path) == ("POST", "/_sandbox/config"):
        knobs = body.read_json()
        if not isinstance(knobs, dict):
            raise bad_request("The body must be a JSON object of knobs.")
        try:
            return Reply(json=app.configure(**knobs).public())
        except ValueError as error:
            raise bad_request(str(error)) from None
    raise unknown_route(method, path)
