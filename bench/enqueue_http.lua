-- wrk script for bench/enqueue_http.sh: POST /v1/instances/{id}/messages,
-- the instance picked at random for every request. The instance ids come
-- from the file named by PGWA_BENCH_IDS (one per line), the tenant key from
-- PGWA_BENCH_KEY.
local ids = {}
for line in io.lines(os.getenv("PGWA_BENCH_IDS")) do
	ids[#ids + 1] = line
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("PGWA_BENCH_KEY")
wrk.body = '{"to":"5511999990000","text":"bench"}'

local thread_no = 0
function setup(thread)
	thread_no = thread_no + 1
	thread:set("seed", thread_no)
end

function init(args)
	math.randomseed(os.time() * 100 + (seed or 0))
end

function request()
	return wrk.format(nil, "/v1/instances/" .. ids[math.random(#ids)] .. "/messages")
end
