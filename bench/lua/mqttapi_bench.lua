-- bench/lua/mqttapi_bench.lua: what an operator would write instead of the
-- module, with Debian's libnginx-mod-http-lua and lua-cjson: the same
-- annotation (headers and body members) of an upstream JSON error, from the
-- same catalog data (conf/mqttapi_catalog.json, loaded once at start-up).
--
--   capture(uri)     content handler: ngx.location.capture of the proxied
--                    location, then headers and body (the only way to add
--                    headers that depend on the body)
--   header_filter()  + body_filter(): body only (a body filter cannot add
--                    headers once it has read the body)
--
-- Per error: cjson.decode, catalog lookup (exact code, else the %s
-- patterns), category from the Action, Accept-Language, append the members
-- that are not there yet, cjson.encode.

local cjson = require "cjson.safe"

local ngx = ngx
local type = type
local pairs = pairs
local concat = table.concat
local find = string.find
local sub = string.sub
local lower = string.lower
local tostring = tostring

local _M = {}

local codes = {}      -- code -> entry
local patterns = {}   -- { lua pattern, entry }
local actions = {}    -- Action -> category
local default_lang = "en"
local lang_alias = {} -- lowercased tag -> catalog language

function _M.init(path)
    local f = assert(io.open(path, "rb"))
    local cat = assert(cjson.decode(f:read("*a")))
    f:close()

    default_lang = cat.default_language or "en"

    for lang, aliases in pairs(cat.languages or {}) do
        for _, a in ipairs(aliases) do
            lang_alias[lower(a)] = lang
        end
    end

    for name, a in pairs(cat.actions or {}) do
        actions[name] = a.category
    end

    for _, e in ipairs(cat.errors) do
        local text = e.text or {}
        local en = text[default_lang] or {}
        local entry = {
            code = e.code,
            cause = en.cause,
            solution = en.solution,
            retryable = e.retryable and true or false,
            retry_after = e.retry_after,
            categories = e.categories or {},
            text = text,
        }

        if find(e.code, "%s", 1, true) then
            local p = "^" .. e.code:gsub("([%.%-%+%*%?%[%]%^%$%(%)])", "%%%1")
                                   :gsub("%%s", "(.+)") .. "$"
            patterns[#patterns + 1] = { p, entry }
        else
            codes[e.code] = entry
        end
    end
end


local function lookup(code)
    local e = codes[code]
    if e then
        return e, nil
    end

    for i = #patterns, 1, -1 do
        local m = code:match(patterns[i][1])
        if m then
            return patterns[i][2], m
        end
    end

    return nil, nil
end


local function negotiate()
    local al = ngx.var.http_accept_language
    if not al then
        return default_lang
    end

    local best, best_q = default_lang, -1
    for range in al:gmatch("[^,]+") do
        local tag, q = range:match("^%s*([^;%s]+)%s*;%s*q=([%d.]+)")
        if not tag then
            tag = range:match("^%s*([^;%s]+)")
            q = 1
        else
            q = tonumber(q) or 0
        end
        if tag then
            local t = lower(tag)
            local lang = lang_alias[t]
            while not lang and find(t, "-", 1, true) do
                t = t:match("^(.*)%-[^-]*$")
                lang = lang_alias[t]
            end
            if lang and q > 0 and q > best_q then
                best, best_q = lang, q
            end
        end
    end

    return best
end


local function is_json(ct)
    if not ct then
        return false
    end
    ct = lower(ct)
    return find(ct, "^application/json") ~= nil
           or find(ct, "^text/json") ~= nil
           or find(ct, "^[^;]*%+json") ~= nil
end


-- Annotates an upstream error body; returns the new body and the headers
-- to add, or nil when the body is left as it is.

local function annotate(body, want_headers)
    local obj = cjson.decode(body)
    if type(obj) ~= "table" then
        return nil
    end

    local code = obj.Code
    if type(code) ~= "string" or #code > 128
       or find(code, "[^%w._%%-]")
    then
        return nil
    end

    local e, param = lookup(code)

    local category = "unknown"
    local action = ngx.var.http_x_acs_action or ngx.var.arg_Action
    if action and actions[action] then
        category = actions[action]
    elseif e and #e.categories == 1 then
        category = e.categories[1]
    end

    local retryable = e and e.retryable or false

    local lang = negotiate()
    local t = e and e.text[lang]

    local cause = t and t.cause or (e and e.cause)
    local solution = t and t.solution or (e and e.solution)

    if obj.Cause == nil and cause then obj.Cause = cause end
    if obj.Solution == nil and solution then obj.Solution = solution end
    if obj.Category == nil then obj.Category = category end
    if obj.Retryable == nil then obj.Retryable = retryable end
    if retryable and e.retry_after and obj.RetryAfter == nil then
        obj.RetryAfter = e.retry_after
    end
    if param and obj.InvalidParameter == nil then
        obj.InvalidParameter = param
    end
    if t and t.description and obj.Description == nil then
        obj.Description = t.description
    end

    local out = cjson.encode(obj)

    if not want_headers then
        return out
    end

    local h = {
        ["X-MQTTAPI-Error-Code"] = code,
        ["X-MQTTAPI-Error-Category"] = category,
        ["X-MQTTAPI-Error-Cause"] = e and e.cause,
        ["X-MQTTAPI-Error-Solution"] = e and e.solution,
        ["X-MQTTAPI-Retryable"] = retryable and "true" or "false",
        ["X-MQTTAPI-Invalid-Parameter"] = param,
    }

    if e then
        h["Content-Language"] =
            (t and (t.description or t.cause)) and lang or default_lang
        h["Vary"] = "Accept-Language"
        if retryable and e.retry_after then
            h["Retry-After"] = tostring(e.retry_after)
        end
    end

    return out, h
end


-- headers and body: ngx.location.capture

function _M.capture(uri)
    local res = ngx.location.capture(uri, { args = ngx.var.args })

    local body = res.body
    local hdrs = res.header

    ngx.status = res.status

    for k, v in pairs(hdrs) do
        local lk = lower(k)
        if lk ~= "content-length" and sub(lk, 1, 10) ~= "x-mqttapi-" then
            ngx.header[k] = v
        end
    end

    if res.status >= 400 and is_json(hdrs["Content-Type"]) then
        local out, h = annotate(body, true)
        if out then
            body = out
            for k, v in pairs(h) do
                ngx.header[k] = v
            end
        end
    end

    ngx.header["Content-Length"] = #body
    ngx.print(body)
end


-- body only: header filter + body filter

function _M.header_filter()
    if ngx.status >= 400 and is_json(ngx.header["Content-Type"]) then
        ngx.ctx.mqttapi = true
        ngx.header["Content-Length"] = nil
    end
end


function _M.body_filter()
    local ctx = ngx.ctx
    if not ctx.mqttapi then
        return
    end

    local chunk, eof = ngx.arg[1], ngx.arg[2]

    local buf = ctx.buf
    if not buf then
        buf = {}
        ctx.buf = buf
    end

    if chunk ~= "" then
        buf[#buf + 1] = chunk
    end

    if not eof then
        ngx.arg[1] = nil
        return
    end

    local body = concat(buf)
    ngx.arg[1] = annotate(body, false) or body
end


return _M
