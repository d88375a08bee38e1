-- Pauses the release by request (the other pauses stay).
obj.status = obj.status or {}
local os = require("os")
if obj.status.pauseConditions == nil then
  obj.status.pauseConditions = {}
end
table.insert(obj.status.pauseConditions, {
  reason = "UserPause",
  startTime = os.date("!%Y-%m-%dT%H:%M:%SZ"),
})
return obj
