-- wrk script for scripts/bench. One wrk thread (-t1) per run.
--
-- BENCH_MODE (environment):
--   plain  requests as given on the command line (-H headers apply); the default
--   wrong  Basic credentials of BENCH_USER with a new wrong password on every request
--          (a password-guessing storm: nothing can be cached)
--   mixed  per 4 requests: BENCH_USER with its password BENCH_PASS twice, once with a new
--          wrong password, once a new unknown user (for the --long memory run)
-- BENCH_SEED makes the generated passwords and users unique across runs.
--
-- done() prints one machine-readable line that scripts/bench parses:
--   WRK requests=N duration_us=N status_errors=N socket_errors=N p50_us=N p99_us=N max_us=N

local mode = os.getenv("BENCH_MODE") or "plain"
local user = os.getenv("BENCH_USER") or "bench"
local pass = os.getenv("BENCH_PASS") or ""
local seed = os.getenv("BENCH_SEED") or tostring(os.time())

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
      .. (b and alphabet:sub(c3 + 1, c3 + 1) or "=")
      .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

local function basic(u, p)
  return { Authorization = "Basic " .. base64(u .. ":" .. p) }
end

local counter = 0

if mode == "wrong" then
  request = function()
    counter = counter + 1
    return wrk.format(nil, nil, basic(user, "wrong-" .. seed .. "-" .. counter))
  end
elseif mode == "mixed" then
  request = function()
    counter = counter + 1
    local k = counter % 4
    if k == 0 then
      return wrk.format(nil, nil, basic(user, "wrong-" .. seed .. "-" .. counter))
    elseif k == 1 then
      return wrk.format(nil, nil, basic("nobody-" .. seed .. "-" .. counter, "x"))
    else
      return wrk.format(nil, nil, basic(user, pass))
    end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
