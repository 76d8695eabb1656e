// Command cr-validator is the controller-runtime benchmark peer of
// validator-webhook: a validating admission webhook that denies workloads
// whose container images do not have a name starting with an allowed prefix.
//
// It runs only controller-runtime's webhook server (no manager, no metrics
// server, no client) with one admission.Handler registered at /validate.
package main

import (
	"context"
	_ "crypto/sha256" // go-digest: make sha256 digests "available" (reference parsing)
	_ "crypto/sha512" // go-digest: sha384/sha512 digests
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/distribution/reference"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// imageValidator implements admission.Handler.
type imageValidator struct {
	decoder admission.Decoder
	prefix  string
}

var _ admission.Handler = &imageValidator{}

func (v *imageValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Delete || req.Operation == admissionv1.Connect {
		return admission.Allowed("")
	}

	var (
		spec    *corev1.PodSpec
		specAt  string
		decoded runtime.Object
	)
	switch req.Kind.Group + "/" + req.Kind.Kind {
	case "/Pod":
		o := &corev1.Pod{}
		decoded, spec, specAt = o, &o.Spec, "spec"
	case "apps/Deployment":
		o := &appsv1.Deployment{}
		decoded, spec, specAt = o, &o.Spec.Template.Spec, "spec.template.spec"
	case "apps/ReplicaSet":
		o := &appsv1.ReplicaSet{}
		decoded, spec, specAt = o, &o.Spec.Template.Spec, "spec.template.spec"
	case "apps/StatefulSet":
		o := &appsv1.StatefulSet{}
		decoded, spec, specAt = o, &o.Spec.Template.Spec, "spec.template.spec"
	case "apps/DaemonSet":
		o := &appsv1.DaemonSet{}
		decoded, spec, specAt = o, &o.Spec.Template.Spec, "spec.template.spec"
	case "batch/Job":
		o := &batchv1.Job{}
		decoded, spec, specAt = o, &o.Spec.Template.Spec, "spec.template.spec"
	case "/ReplicationController":
		o := &corev1.ReplicationController{}
		o.Spec.Template = &corev1.PodTemplateSpec{}
		decoded, spec, specAt = o, &o.Spec.Template.Spec, "spec.template.spec"
	case "batch/CronJob":
		o := &batchv1.CronJob{}
		decoded, spec, specAt = o, &o.Spec.JobTemplate.Spec.Template.Spec, "spec.jobTemplate.spec.template.spec"
	default:
		return admission.Allowed("")
	}

	if err := v.decoder.Decode(req, decoded); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	// ReplicationController.spec.template is a pointer: re-read it after decoding.
	if rc, ok := decoded.(*corev1.ReplicationController); ok {
		if rc.Spec.Template == nil {
			return admission.Allowed("")
		}
		spec = &rc.Spec.Template.Spec
	}

	var problems []string
	check := func(field string, cs []corev1.Container) {
		for i := range cs {
			if why := v.checkImage(cs[i].Image); why != "" {
				problems = append(problems, fmt.Sprintf("%s.%s[%d] (container %q, image %q): %s",
					specAt, field, i, cs[i].Name, cs[i].Image, why))
			}
		}
	}
	check("containers", spec.Containers)
	check("initContainers", spec.InitContainers)
	for i := range spec.EphemeralContainers {
		c := &spec.EphemeralContainers[i].EphemeralContainerCommon
		if why := v.checkImage(c.Image); why != "" {
			problems = append(problems, fmt.Sprintf("%s.ephemeralContainers[%d] (container %q, image %q): %s",
				specAt, i, c.Name, c.Image, why))
		}
	}

	if len(problems) > 0 {
		return admission.Denied("Invalid image name: " + strings.Join(problems, "; "))
	}
	return admission.Allowed("")
}

// checkImage returns "" when the image is acceptable, otherwise the reason.
// The name is the last path component of the repository, parsed the way
// container runtimes do (docker.io/library defaulting, registry host with
// port, tag and digest stripped).
func (v *imageValidator) checkImage(image string) string {
	if image == "" {
		return "image is empty"
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return fmt.Sprintf("cannot parse image reference: %v", err)
	}
	name := path.Base(reference.Path(named))
	if !strings.HasPrefix(name, v.prefix) {
		return fmt.Sprintf("image name %q does not start with %q", name, v.prefix)
	}
	return ""
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "host:port to listen on")
	certDir := flag.String("cert-dir", "", "directory containing tls.crt and tls.key")
	certFile := flag.String("cert", "", "TLS certificate file (overrides --cert-dir)")
	keyFile := flag.String("key", "", "TLS key file (overrides --cert-dir)")
	prefix := flag.String("allowed-prefix", "msalinasc_", "allowed image name prefix")
	http2 := flag.Bool("http2", true, "offer HTTP/2 via ALPN (h2 and http/1.1); false = http/1.1 only")
	flag.Parse()

	// Logging off: a discard logger also silences controller-runtime's
	// "log.SetLogger(...) was never called" warning.
	ctrllog.SetLogger(logr.Discard())

	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		fatal(fmt.Errorf("--listen: %w", err))
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fatal(fmt.Errorf("--listen port: %w", err))
	}

	opts := webhook.Options{Host: host, Port: port}
	switch {
	case *certFile != "" || *keyFile != "":
		if *certFile == "" || *keyFile == "" {
			fatal(errors.New("--cert and --key must be given together"))
		}
		opts.CertDir, opts.CertName = filepath.Dir(*certFile), filepath.Base(*certFile)
		opts.KeyName = filepath.Base(*keyFile)
		if filepath.Dir(*keyFile) != opts.CertDir {
			// Different directories: load the pair ourselves.
			pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				fatal(err)
			}
			opts.TLSOpts = append(opts.TLSOpts, func(c *tls.Config) {
				c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
			})
		}
	case *certDir != "":
		opts.CertDir = *certDir
	default:
		fatal(errors.New("one of --cert-dir or --cert/--key is required"))
	}
	// controller-runtime offers only "h2" by default (HTTP/1.1 clients still
	// connect through Go's ALPN fallback); kubebuilder scaffolds disable h2.
	// Make both explicit.
	opts.TLSOpts = append(opts.TLSOpts, func(c *tls.Config) {
		if *http2 {
			c.NextProtos = []string{"h2", "http/1.1"}
		} else {
			c.NextProtos = []string{"http/1.1"}
		}
	})

	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(appsv1.AddToScheme(scheme))
	utilruntime.Must(batchv1.AddToScheme(scheme))

	srv := webhook.NewServer(opts)
	srv.Register("/validate", &webhook.Admission{Handler: &imageValidator{
		decoder: admission.NewDecoder(scheme),
		prefix:  *prefix,
	}})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "cr-validator:", err)
	os.Exit(1)
}
