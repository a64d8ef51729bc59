-- Argo CD health check of a trainpipe.io TrainingPipeline (Lua 5.1, as Argo CD's gopher-lua runs it).
--
-- Install it under the argocd-cm key `resource.customizations.health.trainpipe.io_TrainingPipeline`
-- (examples/gitops/README.md shows how). It reads only what the operator writes for kstatus readers:
-- the top-level status.observedGeneration and the conditions Ready, Reconciling, Stalled, Suspended
-- (each with its own observedGeneration). Tested against statuses the operator really wrote:
-- tests/cluster/test_gitops.py, and without a cluster in tests/unit/test_health_lua.py.
--
--   status not yet written, or written for an older generation  -> Progressing
--   Stalled=True (a stage failed, or the spec cannot run)        -> Degraded
--   Suspended=True (spec.suspend)                                -> Suspended
--   Ready=True (the current generation's run succeeded)          -> Healthy
--   anything else (Reconciling=True: a run is going)             -> Progressing

local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

-- A condition counts only when it was written for the object's current generation.
local function current(c, generation)
  if c == nil then
    return false
  end
  return c.observedGeneration == nil or generation == nil or c.observedGeneration >= generation
end

local function is_true(c, generation)
  return current(c, generation) and c.status == "True"
end

local function say(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return fallback .. " (" .. c.reason .. ")"
  end
  return fallback
end

local generation = obj.metadata and obj.metadata.generation or nil
local status = obj.status

if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the trainpipe operator to report on this pipeline"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation) ..
    " (status describes generation " .. tostring(status.observedGeneration or "none") .. ")"
  return hs
end

local stalled = condition(status, "Stalled")
local suspended = condition(status, "Suspended")
local ready = condition(status, "Ready")
local reconciling = condition(status, "Reconciling")

if is_true(stalled, generation) then
  hs.status = "Degraded"
  hs.message = say(stalled, "The run stopped")
  return hs
end
if is_true(suspended, generation) then
  hs.status = "Suspended"
  hs.message = status.message or say(suspended, "spec.suspend is true")
  return hs
end
if is_true(ready, generation) then
  hs.status = "Healthy"
  hs.message = say(ready, "The current run succeeded")
  return hs
end

hs.status = "Progressing"
if is_true(reconciling, generation) then
  hs.message = say(reconciling, "A run is in progress")
else
  hs.message = "Waiting for the current generation's run"
end
return hs
