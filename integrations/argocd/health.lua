-- Argo CD health of a sluice.dev Rollout, from what Sluice writes in its status.
hs = {}
local st = obj.status
if st == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Sluice to reconcile the Rollout"
  return hs
end
if st.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and st.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Sluice to see the Rollout's latest spec"
  return hs
end
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type == "InvalidSpec" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = c.message
      return hs
    end
  end
end
local message = st.message or ""
if st.phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
if st.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
if st.phase == "Degraded" and st.abort == true then
  -- An aborted release: Degraded until no traffic reaches the aborted revision; then it waits
  -- for a person (revert git, or retry), as a suspended resource does.
  local off = false
  if st.canary ~= nil and st.canary.weights ~= nil then
    off = st.canary.weights.canary.weight == 0
  elseif st.blueGreen ~= nil then
    off = st.blueGreen.activeSelector ~= nil and st.blueGreen.activeSelector == st.stableRS
  else
    off = (st.updatedReplicas or 0) == 0
  end
  if off then
    hs.status = "Suspended"
    hs.message = "Rolled back: the stable revision " .. (st.stableRS or "") ..
      " serves all traffic. Revert the change in git, or retry. " .. message
    return hs
  end
  hs.status = "Degraded"
  hs.message = "Rolling back: " .. message
  return hs
end
if st.phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
hs.status = "Progressing"
hs.message = message
return hs
