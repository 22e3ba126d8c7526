var http = require('http');

var server = http.createServer(function (req, res) {
  res.writeHead(200, {'Content-Type': 'text/plain'});
  res.end('I am running nodejs version: ' + process.versions.node + '\n');
});

server.listen(3000, function () {
  console.log('listening on 3000');
});
