-- Which of Sluice's actions apply to this Rollout now (the same checks as kubectl sluice).
local actions = {}
local st = obj.status or {}
local releasing = st.currentPodHash ~= nil and st.currentPodHash ~= st.stableRS
local aborted = st.abort == true
local paused = st.pauseConditions ~= nil and #st.pauseConditions > 0
local byRequest = false
if paused then
  for _, p in ipairs(st.pauseConditions) do
    if p.reason == "UserPause" then
      byRequest = true
    end
  end
end
actions["promote"] = {["disabled"] = aborted or not (paused or releasing)}
actions["promote-full"] = {["disabled"] = not releasing or st.promoteFull == true}
actions["abort"] = {["disabled"] = not releasing or aborted}
actions["retry"] = {["disabled"] = not aborted}
actions["pause"] = {["disabled"] = byRequest}
actions["resume"] = {["disabled"] = not byRequest}
return actions
