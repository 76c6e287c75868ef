package server

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criRequestFields walks the request message of every RPC of the CRI
// services, and every message reachable from one, each message type once,
// and returns each field's full name with the RPC whose request reached it
// first.
func criRequestFields(t *testing.T) map[string]string {
	t.Helper()
	services := runtimeapi.File_staging_src_k8s_io_cri_api_pkg_apis_runtime_v1_api_proto.Services()
	if services.Len() == 0 {
		t.Fatal("the cri-api file descriptor has no services")
	}
	fields := map[string]string{}
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor, rpc string)
	walk = func(md protoreflect.MessageDescriptor, rpc string) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		for i := 0; i < md.Fields().Len(); i++ {
			f := md.Fields().Get(i)
			fields[string(f.FullName())] = rpc
			switch {
			case f.IsMap():
				// A map's entry message is no message of the API; its
				// values may be.
				if v := f.MapValue().Message(); v != nil {
					walk(v, rpc)
				}
			case f.Message() != nil:
				walk(f.Message(), rpc)
			}
		}
	}
	for i := 0; i < services.Len(); i++ {
		methods := services.Get(i).Methods()
		for j := 0; j < methods.Len(); j++ {
			walk(methods.Get(j).Input(), string(methods.Get(j).Name()))
		}
	}
	return fields
}

// TestEveryCRIFieldHasADisposition: every field of a CRI request is
// either handled or refused (Fields), so a field a new cri-api adds fails
// here until somebody decides which, instead of being dropped silently.
func TestEveryCRIFieldHasADisposition(t *testing.T) {
	fields := criRequestFields(t)
	var missing, stale, both []string
	for name, rpc := range fields {
		if _, ok := Fields[name]; !ok {
			missing = append(missing, fmt.Sprintf("%s (in %s)", name, rpc))
		}
	}
	for name, d := range Fields {
		if _, ok := fields[name]; !ok {
			stale = append(stale, name)
		}
		if (d.Handled == "") == (d.Refused == "") {
			both = append(both, name)
		}
	}
	for _, l := range [][]string{missing, stale, both} {
		sort.Strings(l)
	}
	for _, f := range missing {
		t.Errorf("CRI field %s is neither handled nor refused: honour it, or refuse requests that set it, and add it to Fields", f)
	}
	for _, f := range stale {
		t.Errorf("Fields lists %s, which no CRI request has (any more)", f)
	}
	for _, f := range both {
		t.Errorf("Fields[%q] must be exactly one of Handled and Refused: %+v", f, Fields[f])
	}
	if len(fields) < 200 {
		t.Errorf("the walk found %d fields only: it lost its way", len(fields))
	}
}

// TestUnimplementedRPCsAreRefused: an RPC whose request fields Fields
// marks as unimplemented answers Unimplemented. Once it is implemented,
// its fields need a real disposition.
func TestUnimplementedRPCsAreRefused(t *testing.T) {
	fd := runtimeapi.File_staging_src_k8s_io_cri_api_pkg_apis_runtime_v1_api_proto
	servers := map[string]any{
		"RuntimeService": &RuntimeService{},
		"ImageService":   &ImageService{},
	}
	checked := 0
	for i := 0; i < fd.Services().Len(); i++ {
		svc := fd.Services().Get(i)
		methods := svc.Methods()
		for j := 0; j < methods.Len(); j++ {
			m := methods.Get(j)
			in := m.Input().Fields()
			if in.Len() == 0 || Fields[string(in.Get(0).FullName())] != unimplemented {
				continue
			}
			for k := 0; k < in.Len(); k++ {
				if Fields[string(in.Get(k).FullName())] != unimplemented {
					t.Errorf("%s: only some of its fields are marked unimplemented", m.FullName())
				}
			}
			checked++
			if code := callUnimplemented(t, servers[string(svc.Name())], string(m.Name())); code != codes.Unimplemented {
				t.Errorf("%s answers %s, yet Fields marks its request unimplemented", m.FullName(), code)
			}
		}
	}
	if checked == 0 {
		// Every RPC of this cri-api is implemented; a new one that is not
		// is marked unimplemented and checked here.
		t.Log("no RPC is marked unimplemented")
	}
}

// callUnimplemented calls method of srv with zero arguments and returns
// the gRPC code of its error. An implemented method finds none of its
// dependencies and panics: that is reported as code Internal.
func callUnimplemented(t *testing.T, srv any, method string) (code codes.Code) {
	t.Helper()
	fn := reflect.ValueOf(srv).MethodByName(method)
	if !fn.IsValid() {
		t.Errorf("%T has no method %s", srv, method)
		return codes.Unknown
	}
	defer func() {
		if r := recover(); r != nil {
			code = codes.Internal
		}
	}()
	args := make([]reflect.Value, fn.Type().NumIn())
	for i := range args {
		typ := fn.Type().In(i)
		switch {
		case typ == reflect.TypeFor[context.Context]():
			args[i] = reflect.ValueOf(context.Background())
		case typ.Kind() == reflect.Pointer:
			args[i] = reflect.New(typ.Elem()) // the request
		default:
			args[i] = reflect.Zero(typ) // a stream
		}
	}
	out := fn.Call(args)
	err, _ := out[len(out)-1].Interface().(error)
	return status.Code(err)
}
