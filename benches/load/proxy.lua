-- wrk script: send absolute-form requests through the proxy.
-- TARGET is the absolute URL (http://host:port/path); Host must agree with it.
local target = os.getenv("TARGET")
local host = target:match("^http://([^/]+)")
wrk.method = "GET"
wrk.path = target
wrk.headers["Host"] = host
