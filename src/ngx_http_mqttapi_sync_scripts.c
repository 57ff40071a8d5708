
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * What the fleet keeps in Redis, each change made by one atomic script
 * (loaded with SCRIPT LOAD on connect, run with EVALSHA).  Times are
 * Redis's own (TIME) or relative: no node's clock is compared with
 * another's.  Every key a script touches is passed in KEYS, and the keys
 * of one call share one hash tag (a zone's name), so that
 * the scripts run on Redis Cluster through a proxy (and on Valkey).  For
 * a zone Z and a node's key K (prefix P):
 *
 *   P "{" Z "}:b"       hash of the zone's back-offs: K -> "count until
 *                       delay code", until in Redis milliseconds; a field
 *                       is gone a while ("keep") after its end
 *   P "{" Z "}:index"   sorted set of the back-offs' K by that time
 *   P "{" Z "}:p:" K    the right to probe K (SET NX PX), a node's id
 *   P "{" Z "}:d:" K    a hash, the fleet's grants of the quota K: field
 *                       a node's id, W c0 c1 want expiry since (22
 *                       bytes, struct '<iHHHdi', cheaper than text to
 *                       parse and build): what it may spend in Redis's
 *                       second W and in the next one, its demand until it
 *                       lapses, and the second its field was made (a
 *                       newcomer's first second); a value of another
 *                       size is dropped
 *   P "{" Z "}:born"    when Redis began to hold the zone's grants: for
 *                       three intervals after, it grants only what the
 *                       nodes re-claim (learning, after a restart)
 *   P "nodes"           sorted set of node ids by their last heartbeat
 *   P "events"          channel: "O Z count left delay code K" (opened)
 *                       and "C Z count 0 0 - K" (closed)
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
     * grant: KEYS born, then a hash of grants per quota key; ARGV node
     * id, interval ms, the nodes alive N as the node counts them (its
     * credit's), then five numbers per key: the limit L, the node's
     * demand (0: it gives back what it has not spent), its second, and
     * what it may spend in that second and the next (its grants and
     * credit: what Redis counts as its claims).  Its claims become what
     * it says, then each of Redis's current second S and the next grows
     * to the node's max-min fair share of L over the demands not lapsed,
     * within L less the other nodes' claims: never above L, credit
     * aside.  Demands that add up to L or less are each met, and the
     * spare (L less their sum) is split equally over the k nodes that
     * want the key (the remainder rotates with the second, as in fair):
     * a node alone gets all of L, so a rate that rises within a second
     * is not refused while the key is far under L.  A node gets no spare
     * in its field's first second: nodes that take up a key together
     * would each get L before they know of one another, on top of the
     * others' credit; nor more than c = ceil(L / N) by fairness: a node
     * whose claim arrives before the others' would get all of L for the
     * next second, on top of their credit.  For three intervals after
     * "born" nothing grows (learning).
     * {S, learning, then per key the node's grants for S and S + 1}
     */

    NGX_HTTP_MQTTAPI_LUA_NOW
    "local S = math.floor(now / 1000) "
    "local id = ARGV[1] "
    "local iv = tonumber(ARGV[2]) "
    "local N = math.max(tonumber(ARGV[3]), 1) "
    "local born = tonumber(redis.call('GET', KEYS[1])) "
    "if not born then born = now end "
    "redis.call('SET', KEYS[1], born, 'PX', 86400000) "
    "local learning = now - born < 3 * iv "
    /*
     * a live node sends each key once a second, from the tick its hash
     * picks or earlier when its demand moves: two sends can be nearly two
     * seconds apart, and a demand lapsed between them would give its part
     * to the others
     */
    "local lapse = 2000 + 3 * iv "
    "local function names(wants) "
      "local o = {} "
      "for n in pairs(wants) do o[#o + 1] = n end "
      "table.sort(o) "
      "return o "
    "end "
    "local function part(open, left, X) "
      "local share = math.floor(left / #open) "
      "local r = left - share * #open "
      "for j, n in ipairs(open) do "
        "if n == id then "
          "if (j - 1 + X) % #open < r then return share + 1 end "
          "return share "
        "end "
      "end "
      "return 0 "
    "end "
    "local function fair(wants, open, L, X) "
      "local left = L "
      "while #open > 0 do "
        "local share = math.floor(left / #open) "
        "local rest = {} "
        "for _, n in ipairs(open) do "
          "if wants[n] <= share then "
            "if n == id then return wants[n] end "
            "left = left - wants[n] "
          "else rest[#rest + 1] = n end "
        "end "
        "if #rest == #open then return part(rest, left, X) end "
        "open = rest "
      "end "
      "return 0 "
    "end "
    "local out = {S, learning and 1 or 0} "
    "for i = 2, #KEYS do "
      "local a = 4 + (i - 2) * 5 "
      "local L = tonumber(ARGV[a]) "
      "local want = tonumber(ARGV[a + 1]) "
      "local ns = tonumber(ARGV[a + 2]) "
      "local own = {} "
      "if ns == S then "
        "own[S] = tonumber(ARGV[a + 3]) own[S + 1] = tonumber(ARGV[a + 4]) "
      "elseif ns == S - 1 then "
        "own[S] = tonumber(ARGV[a + 4]) own[S + 1] = 0 "
      "elseif ns == S + 1 then "
        "own[S + 1] = tonumber(ARGV[a + 3]) "
      "end "
      "local claims = {[S] = {}, [S + 1] = {}} "
      "local since = S "
      "local wants = {} "
      "local del = {} "
      "local f = redis.call('HGETALL', KEYS[i]) "
      "for j = 1, #f, 2 do "
        "local n = f[j] "
        "local s0, c0, c1, w, e, s1 "
        "if #f[j + 1] == 22 then "
          "s0, c0, c1, w, e, s1 = struct.unpack('<iHHHdi', f[j + 1]) "
        "end "
        "if s0 and n == id then since = s1 end "
        "if s0 then "
          "if s0 == S then "
            "claims[S][n] = c0 claims[S + 1][n] = c1 "
          "elseif s0 == S - 1 then "
            "claims[S][n] = c1 "
          "end "
          "if e > now then wants[n] = w "
          "elseif s0 < S - 1 then del[#del + 1] = n end "
        "else "
          "del[#del + 1] = n "
        "end "
      "end "
      "if want > 0 then wants[id] = want else wants[id] = nil end "
      "local total = 0 "
      "for _, w in pairs(wants) do total = total + w end "
      "local g = {} "
      "local nw = nil "
      "for X = S, S + 1 do "
        "g[X] = own[X] or claims[X][id] or 0 "
        "if not learning and want > 0 then "
          "local others = 0 "
          "for n, c in pairs(claims[X]) do "
            "if n ~= id then others = others + c end "
          "end "
          "local f = want "
          "if total > L then "
            "nw = nw or names(wants) "
            "f = fair(wants, nw, L, X) "
          "elseif since < S then "
            "nw = nw or names(wants) "
            "f = want + part(nw, L - total, X) "
          "end "
          "if since == S then f = math.min(f, math.ceil(L / N)) end "
          "local more = math.min(f, L - others) "
          "if more > g[X] then g[X] = more end "
        "end "
        "out[#out + 1] = g[X] "
      "end "
      "if want > 0 or g[S] > 0 or g[S + 1] > 0 then "
        "redis.call('HSET', KEYS[i], id, struct.pack('<iHHHdi', S, "
          "math.min(g[S], 65535), math.min(g[S + 1], 65535), "
          "math.min(want, 65535), want > 0 and now + lapse or 0, since)) "
      "else "
        "del[#del + 1] = id "
      "end "
      "if #del > 0 then redis.call('HDEL', KEYS[i], unpack(del)) end "
      "redis.call('PEXPIRE', KEYS[i], 2000 + lapse) "
    "end "
    "return out"
};
