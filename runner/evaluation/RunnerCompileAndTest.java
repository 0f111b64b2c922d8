// The launcher of every Java check. It compiles the tester in-process ("compile": one JVM start
// instead of two) or takes it compiled ("test"), then confines every class but its own and JUnit's
// (RunnerTesterPolicy: no file writes, no processes, no reflection past access checks, no /proc, no
// management, JFR or attach; an exit ends the JVM at once, without a record), runs the JUnit console
// launcher on the tester, and reports JUnit's own summary in a record file: the tester prints what
// it likes, so stdout is no evidence. The record is what the runner believes, with the JVM's exit
// status: confined code cannot write a file, so only this class writes it, after JUnit returned. It carries an HMAC
// with a per-run key the runner wrote and this class deletes before any tester code loads; the key
// stays in this JVM's memory, which confined code cannot read, but the verdict's safety rests on the
// confinement, not on the key (docs/threat-model.md).
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.platform.console.ConsoleLauncher;
import org.junit.platform.console.ConsoleLauncherExecutionResult;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

public class RunnerCompileAndTest {
    public static void main(String[] args) throws Exception {
        // args: "compile" | "test", class path, source file, tester class, key file, record file,
        // the class path entries that keep every permission (this class's folder, the JUnit jars)
        Path keyFile = Paths.get(args[4]);
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(Files.readAllBytes(keyFile), "HmacSHA256"));
        Files.delete(keyFile);
        Path record = Paths.get(args[5]);
        if (args[0].equals("compile")) {
            JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
            int rc = javac.run(null, null, null,
                    "-nowarn", "-proc:none", "-encoding", "UTF-8", "-cp", args[1], "-d", ".", args[2]);
            if (rc != 0) {
                System.err.println("runner: compilation failed");
                finish(mac, record, "compile_error 3 0 0 0 0 0", 3);
            }
        }
        RunnerTesterPolicy.confine(args[6]);
        ConsoleLauncherExecutionResult result = ConsoleLauncher.execute(System.out, System.err,
                "--disable-banner", "--disable-ansi-colors", "--details=summary", "--select-class", args[3]);
        int rc = result.getExitCode();
        TestExecutionSummary s = result.getTestExecutionSummary().orElse(null);
        String counts = s == null ? "0 0 0 0 0" : s.getTestsFoundCount() + " " + s.getTestsSucceededCount() + " "
                + s.getTestsFailedCount() + " " + s.getTestsAbortedCount() + " " + s.getContainersFailedCount();
        finish(mac, record, "tested " + rc + " " + counts, rc);
    }

    private static void finish(Mac mac, Path record, String body, int rc) throws Exception {
        StringBuilder hex = new StringBuilder();
        for (byte b : mac.doFinal(body.getBytes(StandardCharsets.US_ASCII))) {
            hex.append(String.format("%02x", b));
        }
        Files.write(record, (body + " " + hex + "\n").getBytes(StandardCharsets.US_ASCII));
        System.out.flush();
        System.err.flush();
        // halt, not exit: no shutdown hook runs after the record (confined code cannot register one anyway)
        Runtime.getRuntime().halt(rc);
    }
}
