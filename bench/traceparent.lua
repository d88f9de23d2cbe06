-- wrk: a W3C traceparent on every request.  TRACEPARENT=random (a new
-- trace id per request, as real traffic has) or fixed (one id throughout).
local mode = os.getenv("TRACEPARENT") or "random"
local hex = "0123456789abcdef"
math.randomseed(os.time())

local function random_hex(n)
   local t = {}
   for i = 1, n do
      local r = math.random(1, 16)
      t[i] = hex:sub(r, r)
   end
   return table.concat(t)
end

local fixed = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

request = function()
   local value = fixed
   if mode == "random" then
      value = "00-" .. random_hex(32) .. "-" .. random_hex(16) .. "-01"
   end
   return wrk.format(nil, nil, {["traceparent"] = value})
end
