// Command natsserver runs one clustered natsnode server as a process of its own, so that
// the fault tests can SIGKILL it (an embedded server in the test process could only be
// shut down in order). It serves until SIGTERM or SIGINT.
//
//	natsserver -name n1 -store DIR -port 4222 -cluster-port 6222 -routes nats-route://127.0.0.1:6223,...
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/diplip/diplip/internal/engines/natsnode"
)

func main() {
	name := flag.String("name", "", "server name, unique in the cluster")
	store := flag.String("store", "", "JetStream store directory")
	port := flag.Int("port", 0, "client port on 127.0.0.1")
	clusterName := flag.String("cluster", "diplip", "cluster name")
	clusterPort := flag.Int("cluster-port", 0, "route port on 127.0.0.1")
	routes := flag.String("routes", "", "peers' route URLs, comma-separated")
	flag.Parse()
	if *name == "" || *store == "" || *port == 0 || *clusterPort == 0 || *routes == "" {
		fmt.Fprintln(os.Stderr, "natsserver: -name, -store, -port, -cluster-port and -routes are required")
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := natsnode.Start(natsnode.Config{StoreDir: *store, Port: *port, ServerName: *name, Logger: logger,
		ReadyTimeout: 30 * time.Second,
		Cluster:      &natsnode.ClusterConfig{Name: *clusterName, Port: *clusterPort, Routes: strings.Split(*routes, ",")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsserver:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	s.Shutdown()
	logger.Info("nats stopped", "name", *name)
}
