"""The native gate's Lua source (see the header comment), kept in a Python
module so that it ships with the package whatever the packaging's data-file
rules."""

GATE_LUA = r"""
-- extproc native gate: the parts of the processor's request-headers step that
-- Envoy's own filters cannot express, run in Envoy (LuaJIT), no gRPC hop.
-- One template, four stages (C.stage), each a per-route instance of its own
-- Lua filter so it runs at the processor's priority position:
--   pre          before jwt_authn: ambiguous-path refusals (extproc/paths.py),
--                client-sent identity headers stripped, token-header shape,
--                mtls peer check; the unmatched-route refusal
--   identity     after jwt_authn: the checks jwt_authn lacks (allowed alg,
--                required claims, control characters) and the x-auth-*
--                identity headers, encoded as extproc/identity/publish.py does
--   header_match after RBAC, before local_ratelimit (priority 800)
--   response     last: response header edits, on allowed responses only
-- C (the route's compiled config) is prepended by extproc/xds/lua.py.

local MESSAGES = {
  [400] = "bad request", [401] = "authentication required", [403] = "access denied",
  [404] = "not found", [429] = "too many requests",
}
local REALM = 'Bearer realm="extproc"'
local ROUTING_OVERRIDE = {
  ["x-original-url"] = true, ["x-rewrite-url"] = true, ["x-original-uri"] = true,
  ["x-override-url"] = true, ["x-forwarded-uri"] = true, ["x-forwarded-path"] = true,
  ["x-forwarded-prefix"] = true, ["x-original-method"] = true, ["x-http-method-override"] = true,
  ["x-http-method"] = true, ["x-method-override"] = true,
}
local MAX_PATH_LENGTH = 8192

local function json_string(s)
  return (s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

local function refuse(h, status, code, message, extra)
  local id = h:headers():get("x-request-id") or ""
  local body = '{"error":{"code":"' .. json_string(code) .. '","message":"'
    .. json_string(message or MESSAGES[status] or "request refused")
    .. '","decision_id":"' .. json_string(id) .. '"}}'
  local headers = { [":status"] = tostring(status), ["content-type"] = "application/json", ["x-decision-id"] = id }
  if extra then for k, v in pairs(extra) do headers[k] = v end end
  h:respond(headers, body)
end

local function unauthenticated(h, err)
  local challenge = err and (REALM .. ', error="' .. err .. '"') or REALM
  refuse(h, 401, "unauthenticated", nil, { ["www-authenticate"] = challenge })
end

-- extproc/paths.py, ported: the refusal code of a path, or nil and its
-- canonical form.
local function hexval(b)
  if b >= 48 and b <= 57 then return b - 48 end
  if b >= 65 and b <= 70 then return b - 55 end
  if b >= 97 and b <= 102 then return b - 87 end
  return nil
end

local REFUSED_ESCAPES = {
  [0x25] = "path_double_encoding", [0x2F] = "path_encoded_separator",
  [0x5C] = "path_encoded_separator", [0x3B] = "path_parameter",
}

local function unreserved(b)
  return (b >= 48 and b <= 57) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122)
    or b == 45 or b == 46 or b == 95 or b == 126
end

local ENVOY_ESCAPES = { ['"'] = "%22", ["<"] = "%3C", [">"] = "%3E", ["`"] = "%60",
  ["{"] = "%7B", ["}"] = "%7D", ["|"] = "%7C", ["^"] = "%5E" }

local function canonical(path)
  if #path > MAX_PATH_LENGTH then return "path_too_long", 414 end
  if path:sub(1, 1) ~= "/" then return "path_not_absolute", 400 end
  for i = 1, #path do
    local b = path:byte(i)
    if b < 32 or b == 127 then return "path_control_char", 400 end
    if b > 127 then return "path_non_ascii", 400 end
    if b == 32 or b == 35 then return "path_invalid_char", 400 end
    if b == 59 then return "path_parameter", 400 end
    if b == 92 then return "path_backslash", 400 end
  end
  local i = 1
  while true do
    i = path:find("%", i, true)
    if not i then break end
    local hi, lo = path:byte(i + 1), path:byte(i + 2)
    if not (hi and lo and hexval(hi) and hexval(lo)) then return "path_malformed_escape", 400 end
    i = i + 3
  end
  local out = {}
  i = 1
  while true do
    local j = path:find("%", i, true)
    if not j then out[#out + 1] = path:sub(i); break end
    out[#out + 1] = path:sub(i, j - 1)
    local byte = hexval(path:byte(j + 1)) * 16 + hexval(path:byte(j + 2))
    local refused = REFUSED_ESCAPES[byte]
    if refused then return refused, 400 end
    if byte < 0x20 or byte == 0x7F then return "path_control_char", 400 end
    if byte >= 0x80 then return "path_non_ascii", 400 end
    if unreserved(byte) then out[#out + 1] = string.char(byte)
    else out[#out + 1] = string.format("%%%02X", byte) end
    i = j + 3
  end
  local decoded = table.concat(out):gsub('["<>`{}|^]', ENVOY_ESCAPES)
  -- RFC 3986 dot segments, then empty segments merged (Envoy's order).
  local parts = {}
  for segment in (decoded:sub(2) .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = segment end
  local kept, last = {}, #parts
  for n, segment in ipairs(parts) do
    if segment == "." or segment == ".." then
      if segment == ".." and #kept > 0 then
        local popped = table.remove(kept)
        if popped == "" then return "path_ambiguous_dot_segment", 400 end
      end
      if n == last then kept[#kept + 1] = "" end
    elseif segment:sub(-1) == "." then
      return "path_trailing_dot", 400
    else
      kept[#kept + 1] = segment
    end
  end
  local result = ("/" .. table.concat(kept, "/")):gsub("//+", "/")
  return nil, result
end

-- extproc/identity/publish.py encodings
local function encode_single(v)
  if v == nil or v == "" then return nil end
  return (v:gsub("[%c%%\127]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function encode_list(items)
  local sorted = {}
  for item in pairs(items) do sorted[#sorted + 1] = item end
  if #sorted == 0 then return nil end
  table.sort(sorted)
  for n, item in ipairs(sorted) do
    sorted[n] = item:gsub("[^%w%-%._~:/@!$&'*+=]", function(c) return string.format("%%%02X", c:byte()) end)
  end
  return table.concat(sorted, ",")
end

local function has_control(s) return s:find("[%z\1-\31\127]") ~= nil end

local function text(v)
  if type(v) == "string" then return v end
  if type(v) == "number" and v == math.floor(v) and v > -2^53 and v < 2^53 then
    return string.format("%d", v)
  end
  return nil
end

local function glob_match(patterns, value)
  for _, p in ipairs(patterns) do
    if value:match(p) then return true end
  end
  return false
end

-- What ext_authz sends the processor as source.principal: the peer
-- certificate's first URI SAN, else its first DNS SAN, else its subject.
local function peer_principal(h)
  local ssl = h:streamInfo():downstreamSslConnection()
  if ssl == nil or not ssl:peerCertificatePresented() then return nil end
  local sans = ssl:uriSanPeerCertificate()
  if sans and #sans > 0 then return sans[1] end
  sans = ssl:dnsSansPeerCertificate()
  if sans and #sans > 0 then return sans[1] end
  local subject = ssl:subjectPeerCertificate()
  if subject and subject ~= "" then return subject end
  return nil
end

-- The decision id, also the request's x-request-id from here on (the
-- refusal bodies Envoy's own filters send read it through local_reply_config).
-- Never the client's: it would choose its audit id and could break the JSON.
math.randomseed(os.time() + math.floor(os.clock() * 1e6) + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
local function new_decision_id()
  return string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

local function stage_pre(h)
  local headers = h:headers()
  headers:replace("x-request-id", new_decision_id())
  local raw = headers:get(":path") or ""
  local qmark = raw:find("?", 1, true)
  local path, query = raw, ""
  if qmark then path, query = raw:sub(1, qmark - 1), raw:sub(qmark) end
  local code, result = canonical(path)
  if code then
    refuse(h, result, code, result == 414 and "request path too long" or "ambiguous request path")
    return
  end
  if result ~= path then
    -- Authorize (and route) the canonical path, as the processor does.
    headers:replace(":path", result .. query)
    h:clearRouteCache()
  end
  local spoofed = {}
  for name, _ in pairs(headers) do
    local folded = name:lower():gsub("_", "-")
    if folded ~= name or folded:sub(1, 7) == "x-auth-" or ROUTING_OVERRIDE[folded] then
      spoofed[#spoofed + 1] = name
    end
  end
  for _, name in ipairs(spoofed) do headers:remove(name) end
  if C.deny_all then
    refuse(h, 403, "forbidden")
    return
  end
  if C.mtls then
    local principal = peer_principal(h)
    if principal == nil then
      if C.mtls.required then unauthenticated(h, nil) return end
    elseif #C.mtls.principals > 0 and not glob_match(C.mtls.principals, principal) then
      refuse(h, 403, "forbidden")
      return
    end
  end
  local src = C.token_header
  if src then
    local value = headers:get(src.name)
    if value ~= nil then
      local prefix = src.prefix
      if prefix ~= "" then
        if value:sub(1, #prefix):lower() ~= prefix:lower() then unauthenticated(h, "invalid_request") return end
        value = value:sub(#prefix + 1)
      end
      value = value:match("^%s*(.-)%s*$")
      if #value > src.max_bytes then unauthenticated(h, "invalid_token") return end
      -- jwt_authn reads the configured prefix exactly: hand it that spelling.
      headers:replace(src.name, src.prefix .. value)
    end
  end
end

local function stage_identity(h)
  local headers = h:headers()
  local ident = { methods = {} }
  if C.jwt then
    local md = h:streamInfo():dynamicMetadata():get("envoy.filters.http.jwt_authn")
    local payload = md and md["payload"]
    if payload ~= nil then
      local iss = C.jwt.issuers[payload["iss"]]
      if iss == nil then unauthenticated(h, "invalid_token") return end
      local header = md["header"] or {}
      if not iss.algorithms[header["alg"] or ""] then unauthenticated(h, "invalid_token") return end
      for _, claim in ipairs(iss.required) do
        if payload[claim] == nil then unauthenticated(h, "invalid_token") return end
      end
      local m = iss.claims
      local fields = { subject = m.subject, tenant = m.tenant, agent = m.agent_id }
      for field, claim in pairs(fields) do
        local v = claim and text(payload[claim]) or nil
        if v and has_control(v) then unauthenticated(h, "invalid_token") return end
        ident[field] = v
      end
      ident.issuer = iss.issuer
      local roles = {}
      local raw_roles = m.roles and payload[m.roles] or nil
      if type(raw_roles) == "string" then
        for role in raw_roles:gmatch("%S+") do roles[role] = true end
      elseif type(raw_roles) == "table" then
        for _, r in ipairs(raw_roles) do
          local v = type(r) ~= "boolean" and text(r) or nil
          if v then
            if has_control(v) then unauthenticated(h, "invalid_token") return end
            roles[v] = true
          end
        end
      end
      ident.roles = roles
      ident.methods["jwt"] = true
    end
  end
  if C.mtls then
    ident.principal = peer_principal(h)
    if ident.principal then ident.methods["mtls"] = true end
  end
  for name, value in pairs({
    ["x-auth-subject"] = encode_single(ident.subject),
    ["x-auth-issuer"] = encode_single(ident.issuer),
    ["x-auth-tenant"] = encode_single(ident.tenant),
    ["x-auth-roles"] = ident.roles and encode_list(ident.roles) or nil,
    ["x-auth-principal"] = encode_single(ident.principal),
    ["x-auth-agent"] = encode_single(ident.agent),
    ["x-auth-methods"] = encode_list(ident.methods),
  }) do
    headers:replace(name, value)
  end
end

local function rule_matches(headers, rule)
  local v = headers:get(rule.name)
  if rule.present ~= nil then return (v ~= nil) == rule.present end
  if v == nil then return false end
  if rule.exact ~= nil then return v == rule.exact end
  return v:sub(1, #rule.prefix) == rule.prefix
end

local function stage_header_match(h)
  local headers, hm = h:headers(), C.header_match
  for _, rule in ipairs(hm.deny) do
    if rule_matches(headers, rule) then refuse(h, hm.status, "forbidden") return end
  end
  if #hm.allow > 0 then
    for _, rule in ipairs(hm.allow) do
      if rule_matches(headers, rule) then return end
    end
    refuse(h, hm.status, "forbidden")
  end
end

local STAGES = {
  pre = stage_pre, identity = stage_identity, header_match = stage_header_match,
  response = function(h) h:streamInfo():dynamicMetadata():set("extproc.gate", "passed", true) end,
}

function envoy_on_request(h)
  STAGES[C.stage](h)
end

if C.stage == "response" then
  -- Placed after every native decider, whose refusals still pass through
  -- here on the way out: edit only responses to requests this stage saw,
  -- as the processor edits allowed responses only (the `headers`
  -- capability, the quota's RateLimit-Policy).
  function envoy_on_response(h)
    local md = h:streamInfo():dynamicMetadata():get("extproc.gate")
    if not (md and md["passed"]) then return end
    local headers = h:headers()
    for _, name in ipairs(C.remove) do headers:remove(name) end
    for _, pair in ipairs(C.set) do headers:replace(pair[1], pair[2]) end
  end
end
"""
