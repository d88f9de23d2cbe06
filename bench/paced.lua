-- wrk: each connection waits 1 ms before each request, so the offered load
-- is about 1,000 requests/s per connection (bench/overhead --load half).
function delay()
   return 1
end
