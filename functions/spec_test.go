package functions

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const minimalSpec = `
name: det
model: m.onnx
input: {tensor: images, width: 416, height: 416}
output: {decoder: yolox, tensors: [output]}
`

func TestParseSpecDefaults(t *testing.T) {
	s, err := ParseSpec(strings.NewReader(minimalSpec))
	if err != nil {
		t.Fatal(err)
	}
	if s.Runtime != "onnx" || s.Input.Layout != "NCHW" || s.Input.Channels != "RGB" || s.Input.Resize != "letterbox" ||
		s.Input.Anchor != "top-left" || *s.Input.Pad != 114 || *s.Input.Scale != 1 ||
		*s.Output.ScoreThreshold != 0.3 || *s.Output.NMSThreshold != 0.45 ||
		s.Batch.Max != 8 || time.Duration(s.Batch.MaxDelay) != 20*time.Millisecond || s.Resources.Device != "any" {
		t.Fatalf("defaults not as documented: %+v", s)
	}
}

func TestExampleSpecIsValid(t *testing.T) {
	s, err := LoadSpec("examples/yolox-nano")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "yolox-nano" || s.Input.Channels != "BGR" || s.Output.Decoder != "yolox" {
		t.Fatalf("example spec read as %+v", s)
	}
}

func TestParseSpecErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, edit, want string
	}{
		{"unknown field", "colour: blue", "field colour not found"},
		{"misspelt nested field", "batch: {maxx: 3}", "field maxx not found"},
		{"bad name", "name: Det_1", `name: "Det_1"`},
		{"bad layout", "input: {tensor: images, width: 416, height: 416, layout: NHCW}", `input.layout: "NHCW" is not one of NCHW, NHWC`},
		{"bad channels", "input: {tensor: images, width: 416, height: 416, channels: GBR}", "input.channels"},
		{"zero size", "input: {tensor: images, width: 0, height: 416}", "input.width/height"},
		{"no input tensor", "input: {width: 416, height: 416}", "input.tensor: required"},
		{"model escapes dir", "model: ../../etc/passwd", `model: "../../etc/passwd"`},
		{"absolute model", "model: /etc/passwd", "model:"},
		{"labels escape dir", "labels: ../x.txt", "labels:"},
		{"bad decoder", "output: {decoder: ssd9, tensors: [o]}", `output.decoder: "ssd9"`},
		{"yolox two tensors", "output: {decoder: yolox, tensors: [a, b]}", "exactly one tensor"},
		{"threshold", "output: {decoder: yolox, tensors: [o], score_threshold: 1.5}", "output.score_threshold"},
		{"std zero", "input: {tensor: images, width: 4, height: 4, std: [1, 0, 1]}", "input.std[1]"},
		{"mean length", "input: {tensor: images, width: 4, height: 4, mean: [1]}", "input.mean"},
		{"duration", "batch: {max_delay: soon}", "not a duration"},
		{"batch max", "batch: {max: 1000}", "batch.max"},
		{"device", "resources: {device: tpu}", "resources.device"},
		{"runtime", "runtime: tflite", `runtime: "tflite"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec(strings.NewReader(override(minimalSpec, tc.edit)))
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant ErrInvalidSpec mentioning %q", err, tc.want)
			}
		})
	}
}

// override replaces the top-level key of edit in spec, or appends edit.
func override(spec, edit string) string {
	key, _, _ := strings.Cut(edit, ":")
	var out []string
	replaced := false
	for _, line := range strings.Split(spec, "\n") {
		if strings.HasPrefix(line, key+":") {
			out = append(out, edit)
			replaced = true
			continue
		}
		out = append(out, line)
	}
	if !replaced {
		out = append(out, edit)
	}
	return strings.Join(out, "\n")
}

func TestParseSpecRejectsEmptyAndHuge(t *testing.T) {
	if _, err := ParseSpec(strings.NewReader("")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty spec: %v", err)
	}
	if _, err := ParseSpec(strings.NewReader(strings.Repeat("#", 70<<10))); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("huge spec: %v", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add(minimalSpec)
	f.Add("name: [")
	f.Add("input: {width: -1}")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSpec(strings.NewReader(in))
		if err == nil {
			if verr := s.Validate(); verr != nil {
				t.Fatalf("ParseSpec accepted a spec that Validate rejects: %v", verr)
			}
		} else if !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("error does not wrap ErrInvalidSpec: %v", err)
		}
	})
}
