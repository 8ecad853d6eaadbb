-- wrk script: every request registers a new machine, `GET /ipxe?mac=<unique>&serial=<unique>`,
-- the way iPXE asks on a machine's first boot. MACs are unique per thread and request
-- (locally administered 0e:TT:NN:NN:NN:NN); the first script argument, when given, is a salt
-- byte so several runs against one inventory do not collide. Prints the same JSON summary line
-- as report.lua. Used by scripts/bench.sh.

local threads = {}
local counter = 0
local salt = 0
-- `tid` is a global each thread gets from setup()

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  if args[1] then salt = tonumber(args[1]) % 256 end
end

function request()
  local t = tid or 0
  counter = counter + 1
  local n = counter
  local mac = string.format("0e:%02x:%02x:%02x:%02x:%02x", (t * 16 + salt) % 256,
    math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256,
    n % 256)
  local path = string.format("/ipxe?mac=%s&serial=W%02x%02x%08d", mac, t, salt, n)
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nJSON {"requests":%d,"bytes":%d,"duration_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
