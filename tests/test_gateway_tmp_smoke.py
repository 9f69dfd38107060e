import httpx


def test_smoke(portkey_gateway):
    r = httpx.get(portkey_gateway.root_url + "/")
    assert r.text == "AI Gateway says hey!"
    assert False, "show log"
