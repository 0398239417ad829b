-- wrk script: POST a small send-text body over keep-alive connections.
wrk.method = "POST"
wrk.path = "/instances/bench/send-text"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"to":"5511999990000","text":"hello from wrk"}'
