-- wrk script: every request registers a new machine, `GET /ipxe?mac=<unique>&serial=<unique>`,
-- the way iPXE asks on a machine's first boot. MACs are unique per thread and request
-- (locally administered 0e:TT:NN:NN:NN:NN); the first script argument, when given, is a salt
-- byte so several runs against one inventory do not collide. Prints report.lua's JSON
-- summary line. Used by scripts/bench.sh.

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

-- The JSON summary line: report.lua's `done`, from the folder this script is in.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
