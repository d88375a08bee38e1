-- Skips every remaining step and analysis (an abort is lifted too).
obj.status = obj.status or {}
obj.status.promoteFull = true
return obj
