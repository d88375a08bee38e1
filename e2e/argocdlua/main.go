// Runs Sluice's Argo CD customizations (integrations/argocd) the way Argo CD runs them: in
// gopher-lua with only the package, base and table libraries and a safe os (time and date),
// `obj` set to the live object, one second at most (Argo CD's util/lua). An action's result is
// turned into what Argo CD would send: a JSON merge patch from the live object to the returned
// one, its `status` part apart (Argo CD patches the status subresource with it first).
//
//	argocdlua health    SCRIPT OBJECT.json   -> {"status": ..., "message": ...}
//	argocdlua discovery SCRIPT OBJECT.json   -> {"ACTION": {"disabled": bool}, ...}
//	argocdlua action    SCRIPT OBJECT.json   -> {"status": PATCH|null, "rest": PATCH|null}
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	jsonpatch "github.com/evanphx/json-patch"
	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: argocdlua health|discovery|action SCRIPT OBJECT.json")
		os.Exit(2)
	}
	out, err := run(os.Args[1], os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocdlua:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

func run(mode, scriptPath, objectPath string) ([]byte, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return nil, err
	}
	live, err := os.ReadFile(objectPath)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(live, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", objectPath, err)
	}
	result, err := execute(string(script), obj)
	if err != nil {
		return nil, err
	}
	switch mode {
	case "health":
		var hs struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(result, &hs); err != nil {
			return nil, fmt.Errorf("the health script returned %s: %w", result, err)
		}
		return json.Marshal(hs)
	case "discovery":
		return discovered(result)
	case "action":
		return patches(live, result, obj)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

// execute runs script with obj as Argo CD's VM does, and returns the table it returned as JSON.
func execute(script string, obj map[string]any) ([]byte, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.PreloadModule(lua.OsLibName, openSafeOs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("the script returned %s, not a table", ret.Type())
	}
	return luajson.Encode(ret)
}

// openSafeOs is the os library Argo CD lets scripts have: time and date only.
func openSafeOs(l *lua.LState) int {
	full := lua.NewState()
	defer full.Close()
	full.OpenLibs()
	fullOs, ok := full.GetGlobal(lua.OsLibName).(*lua.LTable)
	if !ok {
		l.RaiseError("no os library")
		return 0
	}
	safe := l.NewTable()
	for _, name := range []string{"time", "date"} {
		if fn, ok := fullOs.RawGetString(name).(*lua.LFunction); ok && fn.IsG {
			safe.RawSetString(name, l.NewFunction(fn.GFunction))
		}
	}
	l.SetGlobal(lua.OsLibName, safe)
	l.Push(safe)
	return 1
}

// toLua turns a decoded JSON value into Lua values, as Argo CD's decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func discovered(result []byte) ([]byte, error) {
	var actions map[string]map[string]any
	if string(result) == "[]" {
		return []byte("{}"), nil
	}
	if err := json.Unmarshal(result, &actions); err != nil {
		return nil, fmt.Errorf("discovery returned %s: %w", result, err)
	}
	out := map[string]map[string]bool{}
	for name, a := range actions {
		disabled, _ := a["disabled"].(bool)
		out[name] = map[string]bool{"disabled": disabled}
	}
	return json.Marshal(out)
}

// patches is what Argo CD sends for an action's returned object: the merge patch from the live
// object, its status part for the status subresource and the rest for the object.
func patches(live, result []byte, obj map[string]any) ([]byte, error) {
	if len(result) > 0 && result[0] == '[' {
		return nil, fmt.Errorf("the action returned a list, not the object: %s", result)
	}
	var returned map[string]any
	if err := json.Unmarshal(result, &returned); err != nil {
		return nil, err
	}
	cleaned, err := json.Marshal(cleanReturned(returned, obj))
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatch.CreateMergePatch(live, cleaned)
	if err != nil {
		return nil, err
	}
	var diff map[string]any
	if err := json.Unmarshal(patch, &diff); err != nil {
		return nil, err
	}
	out := map[string]any{"status": nil, "rest": nil}
	if s, ok := diff["status"]; ok {
		out["status"] = map[string]any{"status": s}
		delete(diff, "status")
	}
	if len(diff) > 0 {
		out["rest"] = diff
	}
	return json.Marshal(out)
}

// cleanReturned undoes what Lua cannot say: an empty table comes back as an empty list, so an
// empty list where the live object had a map is that map again (Argo CD's cleanReturnedObj).
func cleanReturned(returned, live map[string]any) map[string]any {
	for key, was := range live {
		now, ok := returned[key]
		if !ok {
			continue
		}
		switch n := now.(type) {
		case map[string]any:
			if w, ok := was.(map[string]any); ok {
				returned[key] = cleanReturned(n, w)
			}
		case []any:
			switch w := was.(type) {
			case map[string]any:
				if len(n) == 0 {
					returned[key] = w
				}
			case []any:
				returned[key] = cleanReturnedList(n, w)
			}
		}
	}
	return returned
}

// cleanReturnedList does the same for the items of a list, item by item (Argo CD's
// cleanReturnedArray): a step's `pause: {}` in a list of steps stays a map.
func cleanReturnedList(returned, live []any) []any {
	for i := range returned {
		if i >= len(live) {
			break
		}
		switch n := returned[i].(type) {
		case map[string]any:
			if w, ok := live[i].(map[string]any); ok {
				returned[i] = cleanReturned(n, w)
			}
		case []any:
			if w, ok := live[i].([]any); ok {
				returned[i] = cleanReturnedList(n, w)
			}
		}
	}
	return returned
}
