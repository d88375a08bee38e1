-- Aborts the release: all traffic back to the stable revision.
obj.status = obj.status or {}
obj.status.abort = true
return obj
