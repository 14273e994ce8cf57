"""The Lua scripts of the job store (`worker.store`): each step that must be atomic, in one round trip."""

# A result written by the step's own script (`EncodedResult`), as Celery's Redis backend writes it: SET with the
# results' expiry, then PUBLISH on the key, which wakes `AsyncResult.get()`.
WRITE_RESULT = """
local function write_result(key, value, ttl)
  if key == '' then return end
  if tonumber(ttl) > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
  redis.call('PUBLISH', key, value)
end
"""

CREATE = """
-- KEYS: job hash, job-key index (or ''), due set, lock (or ''), in-flight index (or ''), claims (or '': no
--       claim; else the job's start message holds the claim `new`), the tenant's in-flight set (or '').
-- ARGV: job id, job key, ttl, due, lock token, lock ttl (ms), enqueued at, then field/value pairs.
-- Returns {owner id, 1 when this call recorded the job (and took its lock, when asked) else 0}.
if KEYS[2] ~= '' then
  local owner = redis.call('GET', KEYS[2])
  if owner and owner ~= ARGV[1] then return {owner, 0} end
  -- Only a new key is set: an existing one keeps the expiry its finished job gave it.
  if not owner then redis.call('SET', KEYS[2], ARGV[1]) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {ARGV[1], 0} end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6]) end
if KEYS[5] ~= '' then redis.call('ZADD', KEYS[5], 'NX', ARGV[7], ARGV[1]) end
if KEYS[6] ~= '' then redis.call('HSET', KEYS[6], ARGV[1], 'new') end
if KEYS[7] ~= '' then redis.call('ZADD', KEYS[7], 'NX', ARGV[7], ARGV[1]) end
return {ARGV[1], 1}
"""

CLAIM_DUE = """
-- KEYS: due set, claims (or ''). ARGV: now, limit, lease deadline, claim id. Due entries move to the lease
-- deadline as they are claimed, and each claimed job's claim becomes this one (a message carrying an earlier
-- claim of the job is stale from now on).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  if KEYS[2] ~= '' then redis.call('HSET', KEYS[2], id, ARGV[4]) end
end
return ids
"""

TAKE_CLAIM = """
-- KEYS: lock, claims, due set. ARGV: job id, lock token, the message's claim, now, the lock's ttl (ms).
-- Run right after the step tried to take the job's lock: {1, the job's due entry or ''} when the step holds
-- the lock and its message is current, else {0, ''}. Current: the job's claim is the message's (it is used up
-- then, so no other message takes a step with it, and the job is due when the lock lapses, as its step's
-- lease) and the job is scheduled; or, when the job has no claim, the job is still due at the message's
-- claim (a lease).
-- A current message that finds the lock held by another step (one whose worker died, its lock not lapsed yet)
-- leaves the job due as that lock lapses: the next claim takes it over then, not at the claim's lease end.
local claim = redis.call('HGET', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  local left = redis.call('PTTL', KEYS[1])
  if claim == ARGV[3] and left > 0 then
    redis.call('ZADD', KEYS[3], 'XX', tonumber(ARGV[4]) + left / 1000 + 0.05, ARGV[1])
  end
  return {0, ''}
end
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if claim then
  -- A job no longer scheduled (finished, or its schedule lost) is not driven by a message: the reconciler finds it.
  if claim ~= ARGV[3] or not due then return {0, ''} end
  redis.call('HDEL', KEYS[2], ARGV[1])
  due = tostring(tonumber(ARGV[4]) + tonumber(ARGV[5]) / 1000)
  redis.call('ZADD', KEYS[3], due, ARGV[1])
  return {1, due}
end
local lease = tonumber(ARGV[3])
if due and lease and math.abs(tonumber(due) - lease) < 1e-3 then return {1, due} end
return {0, ''}
"""

EXTEND_CLAIMS = """
-- KEYS: claims, due set. ARGV: new due, then job id / claim pairs a dispatcher just sent.
-- Each job the dispatcher claimed on a short lease and sent is due again at the new due (the claim lease, for
-- its message's wait in the queue), unless its claim was used or replaced, or a worker renewed it already.
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    local due = redis.call('ZSCORE', KEYS[2], ARGV[i])
    if due and math.abs(tonumber(due) - tonumber(ARGV[i + 1])) < 1e-6 then
      redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
    end
  end
end
return 0
"""

RENEW_CLAIMS = """
-- KEYS: claims, due set. ARGV: new due, then job id / claim pairs: the messages a live worker holds.
-- Each job still claimed by the message is due again at the new due (its claim's short lease, renewed); a job
-- whose message's claim was used or replaced is left alone. Returns how many were renewed.
local renewed = 0
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
"""

RENEW_STEP = """
-- KEYS: lock, due set. ARGV: job id, lock token, lock ttl (ms), due the step last saw ('' for none), new due.
-- The lease of a step under way: its lock's expiry is renewed while the step holds it, and so is the job's due
-- entry while it is the one the step last saw (a step that rescheduled its job keeps what it wrote).
-- Returns -1 when the lock is no longer the step's, 1 when the due entry moved to the new due, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == '' then return 0 end
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not due or math.abs(tonumber(due) - tonumber(ARGV[4])) > 1e-6 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return 1
"""

FINISH = (
    WRITE_RESULT
    + """
-- KEYS: job hash, due set, events stream, job-key index (or ''), aliases, run index (or ''), finished index,
--       callback outbox, in-flight index, lock (or ''), result (or ''), pending usage (or ''), stretched set,
--       claims (or ''), the tenant's in-flight set (or ''), then the finished index of each facet value (outcome,
--       workflow, tenant), trimmed like the finished index.
-- ARGV: job id, ttl, now, state, error, events maxlen, run status (or ''), callback entry (or ''), checks,
--       lock token, result value, result ttl, usage field, usage note, then event field/value pairs.
-- Returns false when the job had already finished, or when the step's lock is no longer its own (it outlived
-- it: another step may hold the job now), else its aliases (task ids sharing its result).
if KEYS[10] ~= '' then
  if redis.call('GET', KEYS[10]) ~= ARGV[10] then return false end
  redis.call('DEL', KEYS[10])
end
if redis.call('HEXISTS', KEYS[1], 'fin') == 1 then return false end
write_result(KEYS[11], ARGV[11], ARGV[12])
if KEYS[12] ~= '' then redis.call('HSET', KEYS[12], ARGV[13], ARGV[14]) end
redis.call('HSET', KEYS[1], 'fin', ARGV[3], 'st', ARGV[4], 'err', ARGV[5], 'chk', ARGV[9])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'rst', ARGV[7]) end
redis.call('HDEL', KEYS[1], 'sec')
local piece = 1
while redis.call('HDEL', KEYS[1], 'sec' .. piece) == 1 do piece = piece + 1 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('ZREM', KEYS[13], ARGV[1])
if KEYS[14] ~= '' then redis.call('HDEL', KEYS[14], ARGV[1]) end
if KEYS[15] ~= '' then redis.call('ZREM', KEYS[15], ARGV[1]) end
local event = {}
for i = 15, #ARGV do event[#event + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', unpack(event))
-- Finished jobs by finish time, kept as long as results; the callback is queued in the same step as the finish.
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[2])))
for i = 16, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[2])))
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
if ARGV[8] ~= '' then redis.call('XADD', KEYS[8], '*', 'callback', ARGV[8]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if KEYS[4] ~= '' then redis.call('EXPIRE', KEYS[4], ARGV[2]) end
redis.call('EXPIRE', KEYS[5], ARGV[2])
if KEYS[6] ~= '' then redis.call('EXPIRE', KEYS[6], ARGV[2]) end
return redis.call('SMEMBERS', KEYS[5])
"""
)

NOTE_RUN = (
    WRITE_RESULT
    + """
-- KEYS: job hash, due set, events stream, stretched set (or ''), run index (or ''), lock (or ''), result (or '').
-- ARGV: job id, due, events maxlen, lock token, number of hash field/value pairs (n), result value, result ttl,
--       stretched set ttl, the n pairs, then event field/value pairs (none: no event).
-- Returns 0, writing nothing, when the step's lock is no longer its own or the job finished meanwhile: a step
-- that outlived its lock never un-finishes a job, nor overwrites what the lock's new holder wrote.
if KEYS[6] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[4] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'fin') == 1 or redis.call('EXISTS', KEYS[1]) == 0 then
  if KEYS[6] ~= '' then redis.call('DEL', KEYS[6]) end
  return 0
end
local n = tonumber(ARGV[5])
write_result(KEYS[7], ARGV[6], ARGV[7])
local fields = {}
for i = 9, 8 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
if KEYS[5] ~= '' then
  redis.call('HDEL', KEYS[1], 'post')
  redis.call('SET', KEYS[5], ARGV[1])
end
if #ARGV > 8 + 2 * n then
  local event = {}
  for i = 9 + 2 * n, #ARGV do event[#event + 1] = ARGV[i] end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(event))
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if KEYS[4] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[4], ARGV[8])
end
if KEYS[6] ~= '' then redis.call('DEL', KEYS[6]) end
return 1
"""
)

RECORD_RUN = """
-- KEYS: job hash, run index. ARGV: job id, run id, submitted at, running state.
-- The job's run, recorded and indexed back to the job; whoever holds the lock (a step that outlived its lock
-- must still record the run its create made, or a second create would follow). Refused (0) when the job is
-- unknown or has another run; a finished job keeps its state.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = redis.call('HGET', KEYS[1], 'run')
if current and current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'run', ARGV[2], 'sub', ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'fin') == 0 then redis.call('HSET', KEYS[1], 'st', ARGV[4]) end
redis.call('HDEL', KEYS[1], 'post')
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

UPDATE = """
-- KEYS: job hash. ARGV: the number of field/value pairs to set (n), the n pairs, then fields to clear.
-- Writes only to a record that exists: a late write never makes a record out of a few fields (one with no
-- request, which no reader could load) after the job's record expired or was deleted. Returns 1 when written.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
if n > 0 then
  local fields = {}
  for i = 2, 1 + 2 * n do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
if #ARGV > 1 + 2 * n then
  local cleared = {}
  for i = 2 + 2 * n, #ARGV do cleared[#cleared + 1] = ARGV[i] end
  redis.call('HDEL', KEYS[1], unpack(cleared))
end
return 1
"""

SCHEDULE = """
-- KEYS: job hash, due set, stretched set (or ''). ARGV: job id, due, 1 to clear the posting mark, stretched ttl.
-- A finished job is never scheduled again: its entry is removed instead, and 0 returned.
if redis.call('HEXISTS', KEYS[1], 'fin') == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  if KEYS[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[1]) end
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if KEYS[3] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
if ARGV[3] == '1' then redis.call('HDEL', KEYS[1], 'post') end
return 1
"""

ADOPT = """
-- KEYS: job hash, run index, job-key index (or ''), due set, the tenant's in-flight set (or '').
-- ARGV: job id, due, then field/value pairs.
-- Returns {1, job id} when recorded, {0, owner} when the job or run is known already, {2, owner} when the
-- job key belongs to another job.
if redis.call('HEXISTS', KEYS[1], 'req') == 1 then return {0, ARGV[1]} end
local run_owner = redis.call('GET', KEYS[2])
if run_owner and run_owner ~= ARGV[1] then return {0, run_owner} end
if KEYS[3] ~= '' then
  local owner = redis.call('GET', KEYS[3])
  if owner and owner ~= ARGV[1] then return {2, owner} end
  redis.call('SET', KEYS[3], ARGV[1])
end
-- A fragment (fields a step under way wrote after the data went) gives way to the whole record.
redis.call('DEL', KEYS[1])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
if KEYS[5] ~= '' then redis.call('ZADD', KEYS[5], 'NX', ARGV[2], ARGV[1]) end
return {1, ARGV[1]}
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
