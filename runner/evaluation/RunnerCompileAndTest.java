// The launcher of every Java check. It compiles the tester in-process ("compile": one JVM start
// instead of two) or takes it compiled ("test"), runs the JUnit console launcher on it, and
// reports JUnit's own summary in a record file authenticated with a key that only this process
// read: the tester's code runs inside this JVM and can print, exit or write files at will, so
// neither stdout nor the exit status is evidence. The key file is deleted before any tester code
// is loaded, and the key lives only in locals of main (no field reflection can reach), so the
// tester can neither forge a record nor alter the one written here without the runner noticing.
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
        // args: "compile" | "test", class path, source file, tester class, key file, record file
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
        // halt, not exit: shutdown hooks the tester registered must not run after the record
        Runtime.getRuntime().halt(rc);
    }
}
