-- A bridge-like mix of Matrix calls, one cycle of ten requests per connection, over keep-alive:
-- login, createRoom, two puts and two gets of a state event, two joined_rooms, two sends.
-- BENCH_MIX=steady leaves out login and createRoom and repeats 50 transaction ids, so the server's
-- state stops growing: what the memory run needs (only a leak can grow it then).
-- BENCH_TOKEN, BENCH_ROOM, BENCH_USER and BENCH_PASSWORD come from the bench script, which made them;
-- rooms are created with BENCH_CREATOR_TOKEN, another user's, so the first user's joined_rooms stays one
-- room long and every second of the run measures the same work.
local token = os.getenv("BENCH_TOKEN")
local creator = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_CREATOR_TOKEN"), ["Content-Type"] = "application/json" }
local room = os.getenv("BENCH_ROOM"):gsub("!", "%%21"):gsub(":", "%%3A")
local user = os.getenv("BENCH_USER")
local password = os.getenv("BENCH_PASSWORD")
local auth = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
local plain = { ["Content-Type"] = "application/json" }
local base = "/_matrix/client/v3"
local counter = 0
local thread_id = 0
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

local steady = os.getenv("BENCH_MIX") == "steady"

function request()
  counter = counter + 1
  local step = counter % 10
  local txn = thread_id .. "-" .. counter
  local value = "bench " .. txn
  if steady then
    step = 2 + counter % 8
    txn = "steady-" .. (counter % 50)
    value = "bench steady"
  end
  if step == 0 then
    return wrk.format("POST", base .. "/login", plain,
      '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"' .. user .. '"},"password":"' .. password .. '"}')
  elseif step == 1 then
    return wrk.format("POST", base .. "/createRoom", creator, '{"preset":"private_chat","name":"bench ' .. txn .. '"}')
  elseif step == 2 or step == 3 then
    return wrk.format("PUT", base .. "/rooms/" .. room .. "/state/org.example.bench/key", auth, '{"value":"' .. value .. '"}')
  elseif step == 4 or step == 5 then
    return wrk.format("GET", base .. "/rooms/" .. room .. "/state/org.example.bench/key", auth)
  elseif step == 6 or step == 7 then
    return wrk.format("GET", base .. "/joined_rooms", auth)
  else
    return wrk.format("PUT", base .. "/rooms/" .. room .. "/send/m.room.message/" .. txn, auth,
      '{"msgtype":"m.text","body":"bench ' .. txn .. '"}')
  end
end

-- BENCH_DEBUG=1 shows the first failing answers (off by default: a response hook costs wrk time).
if os.getenv("BENCH_DEBUG") then
  local failures = 0
  function response(status, headers, body)
    if status >= 300 then
      failures = failures + 1
      if failures <= 3 then io.stderr:write("bench: answer " .. status .. ": " .. body:sub(1, 200) .. "\n") end
    end
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "errors_status": %d, "errors_socket": %d, "p50_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
