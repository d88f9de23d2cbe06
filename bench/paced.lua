-- wrk: each connection waits 1 ms before each request, so it offers at most
-- 1,000 requests/s, fewer by the request's own latency; bench/overhead
-- --load half measures what one offers and picks how many to open.
function delay()
   return 1
end
