-- wrk script: rotate over a fixed list of request paths; report percentiles as one JSON line.
-- Arguments (after `--`): <file of paths, one a line> [<file holding a bearer token>] [<start>]

local paths = {}
local n = 0
local i = 0
local headers = {}

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      paths[n] = line
    end
  end
  f:close()
  if args[2] and #args[2] > 0 and args[2] ~= "-" then
    local t = assert(io.open(args[2], "r"))
    local token = t:read("*l")
    t:close()
    headers["Authorization"] = "Bearer " .. token
  end
  i = tonumber(args[3] or "0") or 0
end

function request()
  i = i % n + 1
  return wrk.format("GET", paths[i], headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, ' ..
    '"p95_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d, "err_connect": %d, ' ..
    '"err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
