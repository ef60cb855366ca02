-- report.lua is the wrk script of bench/serve.sh: at the end of a run it
-- prints one machine-readable line with the exact counts (wrk's own summary
-- rounds them and mixes units):
--
--   RESULT requests=N bytes=N duration_us=N connect=N read=N write=N
--          status=N timeout=N p50_us=N p99_us=N
--
-- bytes counts whole responses, headers included; status counts responses
-- with a status of 400 or more.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
