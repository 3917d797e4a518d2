-- wrk script: send absolute-form requests through the proxy.
-- TARGET is the absolute URL (http://host:port/path); Host must agree with it.
-- The request is formatted once and reused, so the client costs the same as in
-- the direct baseline.
local target = os.getenv("TARGET")
local host = target:match("^http://([^/]+)")
local req

function init(args)
    req = wrk.format("GET", target, { ["Host"] = host })
end

function request()
    return req
end
