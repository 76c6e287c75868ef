package pod

import (
	"context"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet lists every pod and container once a second (PLEG relist).
// Encoding the answer was a third of a list call's time at 250 pods, for
// items that change only when a pod or container changes state: each item
// keeps its encoding (listWire) until then, and a list is the
// concatenation of its items' encodings.

// wireItem is one list item's encoding as a field of its List response
// (tag, length, message), kept until key (what of the item can change)
// changes.
type wireItem[K comparable] struct {
	mu  sync.Mutex
	key K
	b   []byte
}

func (w *wireItem[K]) get(key K, field protoreflect.FieldNumber, build func() proto.Message) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b != nil && w.key == key {
		return w.b, nil
	}
	msg, err := proto.Marshal(build())
	if err != nil {
		return nil, err
	}
	b := protowire.AppendTag(nil, field, protowire.BytesType)
	w.key, w.b = key, protowire.AppendBytes(b, msg)
	return w.b, nil
}

// containerWireKey is what of a listed container can change.
type containerWireKey struct {
	state                        string
	imageName, imageRef, imageID string
}

var (
	podItemsField       = fieldNumber(&runtimeapi.ListPodSandboxResponse{}, "items")
	containerItemsField = fieldNumber(&runtimeapi.ListContainersResponse{}, "containers")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protoreflect.FieldNumber {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// ListPodSandboxResponse is ListPodSandbox's answer for the wire: its
// items are already encoded, as the response's unknown fields (which
// protobuf writes as they are), so that it encodes as if Items held
// them and decodes into Items. Only for sending: in this process its
// Items are empty.
func (m *Manager) ListPodSandboxResponse(ctx context.Context, f *runtimeapi.PodSandboxFilter) (*runtimeapi.ListPodSandboxResponse, error) {
	var raw []byte
	var err error
	m.eachListedSandbox(f, func(sb *sandbox, rec sandboxRecord) {
		if err != nil {
			return
		}
		var b []byte
		b, err = sb.wire.get(rec.State, podItemsField, func() proto.Message { return sb.listItem(rec) })
		raw = append(raw, b...)
	})
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxResponse{}
	resp.ProtoReflect().SetUnknown(raw)
	return resp, nil
}

// ListContainersResponse is ListContainers' answer for the wire, its items
// encoded as ListPodSandboxResponse's are.
func (m *Manager) ListContainersResponse(ctx context.Context, f *runtimeapi.ContainerFilter) (*runtimeapi.ListContainersResponse, error) {
	var raw []byte
	var err error
	m.eachListedContainer(f, func(c *container, rec containerRecord) {
		if err != nil {
			return
		}
		if isImageID(rec.ImageName, rec.ImageID) {
			// Named by its ID: listItem looks for a name each time
			// (the image may have been pulled again since).
			var msg []byte
			msg, err = proto.Marshal(m.listItem(c, rec))
			raw = protowire.AppendBytes(protowire.AppendTag(raw, containerItemsField, protowire.BytesType), msg)
			return
		}
		key := containerWireKey{state: rec.State, imageName: rec.ImageName, imageRef: rec.ImageRef, imageID: rec.ImageID}
		var b []byte
		b, err = c.wire.get(key, containerItemsField, func() proto.Message { return m.listItem(c, rec) })
		raw = append(raw, b...)
	})
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListContainersResponse{}
	resp.ProtoReflect().SetUnknown(raw)
	return resp, nil
}
