module example.com/dockyard-app

go 1.22
