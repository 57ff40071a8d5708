
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * What the fleet keeps in Redis, each change made by one atomic script
 * (loaded with SCRIPT LOAD on connect, run with EVALSHA).  Times are
 * Redis's own (TIME) or relative: no node's clock is compared with
 * another's.  Every key a script touches is passed in KEYS, and the keys
 * of one call share one hash tag (a zone's name, or "shares"), so that
 * the scripts run on Redis Cluster through a proxy (and on Valkey).  For
 * a zone Z and a node's key K (prefix P):
 *
 *   P "{" Z "}:b"       hash of the zone's back-offs: K -> "count until
 *                       delay code", until in Redis milliseconds; a field
 *                       is gone a while ("keep") after its end
 *   P "{" Z "}:index"   sorted set of the back-offs' K by that time
 *   P "{" Z "}:p:" K    the right to probe K (SET NX PX), a node's id
 *   P "{" Z "}:w:" K ":" W   the tokens of K leased in the second W,
 *                       beyond the shares the nodes spend without asking
 *   P "{shares}:" W     set of the ids of the nodes that have a share of
 *                       every quota in the second W, each joined two
 *                       seconds ahead: closed once W - 1 begins
 *   P "nodes"           sorted set of node ids by their last heartbeat
 *   P "events"          channel: "O Z count left delay code K" (opened)
 *                       and "C Z count 0 0 - K" (closed)
 *
 * The lease script still reads the shares' set of its second, outside
 * its zone's tag (and undeclared): the quotas by demand replace it.
 */


#define NGX_HTTP_MQTTAPI_LUA_NOW                                              \
    "local t = redis.call('TIME') "                                           \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "


const char  *ngx_http_mqttapi_sync_scripts[] = {

    /*
     * open: KEYS back-offs, index, right; ARGV K, count, left, delay, code,
     * channel, Z, keep.  The higher count wins, then the later end; the
     * reply is the fleet's back-off {count, left, delay, code}.
     */

    NGX_HTTP_MQTTAPI_LUA_NOW
    "local count = tonumber(ARGV[2]) "
    "local untl = now + tonumber(ARGV[3]) "
    "local keep = tonumber(ARGV[8]) "
    "local old = redis.call('HGET', KEYS[1], ARGV[1]) "
    "local c, u, d, k "
    "if old then "
      "c, u, d, k = string.match(old, '^(%d+) (%d+) (%d+) (%S+)$') "
    "end "
    "if c and tonumber(u) + keep <= now then c = nil end "
    "if c then "
      "c = tonumber(c) u = tonumber(u) "
      "if c > count or (c == count and u >= untl) then "
        "return {c, u - now, tonumber(d), k} "
      "end "
      "if c < count then redis.call('DEL', KEYS[3]) end "
    "else "
      "redis.call('DEL', KEYS[3]) "
    "end "
    "redis.call('HSET', KEYS[1], ARGV[1], count .. ' ' .. untl .. ' ' "
      ".. ARGV[4] .. ' ' .. ARGV[5]) "
    "if redis.call('PTTL', KEYS[1]) < untl - now + keep then "
      "redis.call('PEXPIRE', KEYS[1], untl - now + keep) "
    "end "
    "redis.call('ZADD', KEYS[2], untl + keep, ARGV[1]) "
    "redis.call('PUBLISH', ARGV[6], 'O ' .. ARGV[7] .. ' ' .. count .. ' ' "
      ".. (untl - now) .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' "
      ".. ARGV[1]) "
    "return {count, untl - now, tonumber(ARGV[4]), ARGV[5]}",

    /* close: KEYS back-offs, index, right; ARGV K, count, channel, Z */

    "local old = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if old then "
      "local c = tonumber(string.match(old, '^(%d+) ')) "
      "if c and c > tonumber(ARGV[2]) then return 0 end "
    "end "
    "redis.call('HDEL', KEYS[1], ARGV[1]) "
    "redis.call('DEL', KEYS[3]) "
    "redis.call('ZREM', KEYS[2], ARGV[1]) "
    "redis.call('PUBLISH', ARGV[3], 'C ' .. ARGV[4] .. ' ' .. ARGV[2] "
      ".. ' 0 0 - ' .. ARGV[1]) "
    "return 1",

    /*
     * pull: KEYS index, back-offs.  The zone's back-offs, flat: K, count,
     * left, delay, code, ...; those past their time are dropped
     */

    NGX_HTTP_MQTTAPI_LUA_NOW
    "for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do "
      "redis.call('HDEL', KEYS[2], k) "
    "end "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    "local out = {} "
    "for _, k in ipairs(redis.call('ZRANGE', KEYS[1], 0, 4095)) do "
      "local v = redis.call('HGET', KEYS[2], k) "
      "local c, u, d, code "
      "if v then "
        "c, u, d, code = string.match(v, '^(%d+) (%d+) (%d+) (%S+)$') "
      "end "
      "if c then "
        "out[#out + 1] = k "
        "out[#out + 1] = tonumber(c) "
        "out[#out + 1] = tonumber(u) - now "
        "out[#out + 1] = tonumber(d) "
        "out[#out + 1] = code "
      "else "
        "redis.call('ZREM', KEYS[1], k) "
      "end "
    "end "
    "return out",

    /*
     * beat: KEYS nodes; ARGV node id, alive ms.  {the nodes alive, Redis's
     * time in ms}: the nodes count their quotas' seconds on Redis's clock
     */

    NGX_HTTP_MQTTAPI_LUA_NOW
    "redis.call('ZADD', KEYS[1], now, ARGV[1]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2])) "
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2) "
    "return {redis.call('ZCARD', KEYS[1]), now}",

    /*
     * lease: ARGV the budget's prefix "P Z :w: K :", tokens wanted, the
     * limit, the prefix of the shares' sets "P shares:".  The budget of
     * a second is the limit less what the nodes that share that second
     * spend without asking, "limit / nodes" each, rounded down as they
     * do.  {tokens granted, ms left in this second, the second}
     */

    NGX_HTTP_MQTTAPI_LUA_NOW
    "local w = math.floor(now / 1000) "
    "local k = ARGV[1] .. w "
    "local limit = tonumber(ARGV[3]) "
    "local n = redis.call('SCARD', ARGV[4] .. w) "
    "local used = tonumber(redis.call('GET', k) or '0') "
    "local shares = 0 "
    "if n > 0 then shares = math.floor(limit / n) * n end "
    "local g = math.min(tonumber(ARGV[2]), limit - shares - used) "
    "if g > 0 then "
      "redis.call('INCRBY', k, g) "
      "redis.call('PEXPIRE', k, 3000) "
    "else "
      "g = 0 "
    "end "
    "return {g, (w + 1) * 1000 - now, w}",

    /*
     * share: KEYS the shares' sets of the second after next and of the
     * next one, as the node reckons Redis's second S; ARGV the node's id,
     * S.  The node joins the second after next; the set of the next one
     * is closed: {the next second, the nodes sharing it, or 0 when this
     * node is not among them}.  A node that reckoned another second than
     * Redis's (a boundary within the roundtrip) joins none: no share in
     * the second after next, it leases there.
     */

    NGX_HTTP_MQTTAPI_LUA_NOW
    "local w = math.floor(now / 1000) "
    "if w ~= tonumber(ARGV[2]) then return {w + 1, 0} end "
    "redis.call('SADD', KEYS[1], ARGV[1]) "
    "redis.call('PEXPIRE', KEYS[1], 4000) "
    "local n = 0 "
    "if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then "
      "n = redis.call('SCARD', KEYS[2]) "
    "end "
    "return {w + 1, n}"
};
