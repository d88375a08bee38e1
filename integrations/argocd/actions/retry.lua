-- Retries an aborted release from its first step.
obj.status = obj.status or {}
obj.status.abort = false
return obj
