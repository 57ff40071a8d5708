-- bench/quota_keys.lua: wrk's requests of the quota_ok and sync_quota
-- cases (bench/run.sh), spread round-robin over 64 keys: the case's URL
-- ends with its key, and "-0" to "-63" is appended.  A synced quota lets
-- at most 31 requests of a key through within 2 ms of a second's
-- boundary (src/ngx_http_mqttapi_quota_sync.c); one key at tens of
-- thousands of requests a second would find more there and be refused,
-- far under its quota.  64 keys keep each under 1,000/s, the success
-- path through the quota.
local n = 0
local path = wrk.path

request = function()
    n = n + 1
    return wrk.format(nil, path .. "-" .. (n % 64))
end
