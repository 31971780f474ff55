module github.com/dgryski/go-rendezvous
