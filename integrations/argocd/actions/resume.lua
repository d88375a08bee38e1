-- Lifts the pause made by request; the other pauses stay.
obj.status = obj.status or {}
local rest = {}
if obj.status.pauseConditions ~= nil then
  for _, p in ipairs(obj.status.pauseConditions) do
    if p.reason ~= "UserPause" then
      table.insert(rest, p)
    end
  end
end
if #rest == 0 then
  obj.status.pauseConditions = nil
else
  obj.status.pauseConditions = rest
end
return obj
