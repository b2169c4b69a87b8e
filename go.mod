module chat

go 1.26
