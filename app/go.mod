module example.com/dockyard-app

go 1.22

require github.com/golang-jwt/jwt/v4 v4.5.2
