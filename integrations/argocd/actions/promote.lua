-- Lifts every pause (a step's, an inconclusive analysis', blue-green's), or else moves the
-- release to its next step.
obj.status = obj.status or {}
if obj.status.pauseConditions ~= nil and #obj.status.pauseConditions > 0 then
  obj.status.pauseConditions = nil
else
  obj.status.currentStepIndex = (obj.status.currentStepIndex or 0) + 1
end
return obj
